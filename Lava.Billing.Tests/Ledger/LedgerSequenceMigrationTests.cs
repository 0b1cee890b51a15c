using Dapper;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Lava.Billing.Tests.Ledger;

/// <summary>
/// A ledger numbered one row per entry, as before the sequence was stored per transaction, keeps every seq when migrated:
/// cursors already handed out stay valid, and a transaction whose entries were not consecutive reads the same.
/// </summary>
public class LedgerSequenceMigrationTests : IAsyncLifetime
{
    private const int PerTransactionVersion = 300;
    private const string Merchant = "mer_legacy";
    private string _database = "";

    public async Task InitializeAsync() => _database = await TestDatabase.CreateEmptyAsync();

    public Task DisposeAsync() => TestDatabase.DropAsync(_database);

    private Task RunScriptsAsync(Func<int, bool> which) => TestDatabase.ApplyMigrationsAsync(_database, which);

    [Fact]
    public async Task PerEntryNumbersAreConvertedRunByRunAndQueuedEntriesNumberedWithNoSeqChanged()
    {
        await RunScriptsAsync(v => v < PerTransactionVersion);
        await using (var admin = new NpgsqlConnection(TestDatabase.For(TestDatabase.AdminConnectionString, _database)))
        {
            // Written as the old sequencer left them: a and b interleave (two posting statements committed together), c is
            // whole; d's entries are still queued. Triggers off: only the numbering's shape matters here.
            await admin.ExecuteAsync("""
                SET session_replication_role = replica;
                INSERT INTO accounts (merchant_id, account_id, kind, type, currency, cached) VALUES
                    (@m, 'provider_cost', 'provider_cost', 'expense', 'USD', false),
                    (@m, 'provider_payable', 'provider_payable', 'liability', 'USD', false);
                INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, effective_at)
                SELECT @m, t, 'manual', t, now() FROM unnest(ARRAY['txn_a', 'txn_b', 'txn_c', 'txn_d']) t;
                INSERT INTO entries (merchant_id, entry_id, transaction_id, account_id, currency, amount) OVERRIDING SYSTEM VALUE VALUES
                    (@m, 10, 'txn_a', 'provider_cost', 'USD', 1), (@m, 11, 'txn_b', 'provider_cost', 'USD', 2),
                    (@m, 12, 'txn_a', 'provider_payable', 'USD', -1), (@m, 13, 'txn_b', 'provider_payable', 'USD', -2),
                    (@m, 14, 'txn_c', 'provider_cost', 'USD', 3), (@m, 15, 'txn_c', 'provider_payable', 'USD', -3),
                    (@m, 16, 'txn_d', 'provider_cost', 'USD', 4), (@m, 17, 'txn_d', 'provider_payable', 'USD', -4);
                INSERT INTO entry_sequence (merchant_id, seq, entry_id) VALUES
                    (@m, 1, 10), (@m, 2, 11), (@m, 3, 12), (@m, 4, 13), (@m, 5, 14), (@m, 6, 15);
                INSERT INTO entry_unsequenced (merchant_id, first_entry_id, entry_count, entry_ids) VALUES (@m, 16, 2, '{16, 17}');
                SET session_replication_role = origin;
                """, new { m = Merchant });
        }

        await RunScriptsAsync(v => v >= PerTransactionVersion);

        await using var source = NpgsqlDataSource.Create(TestDatabase.For(TestDatabase.OwnerConnectionString, _database));
        await using var c = await source.OpenConnectionAsync();
        Assert.Equal([(1L, "txn_a", "10"), (2L, "txn_b", "11"), (3L, "txn_a", "12"), (4L, "txn_b", "13"), (5L, "txn_c", "14,15"), (7L, "txn_d", "16,17")],
            (await c.QueryAsync<(long, string, string)>("""
                SELECT first_seq, transaction_id, array_to_string(entry_ids, ',') FROM ledger_sequence WHERE merchant_id = @m ORDER BY first_seq
                """, new { m = Merchant })).ToList());
        Assert.Equal(0L, await c.ExecuteScalarAsync<long>("SELECT count(*) FROM entry_unsequenced"));
        Assert.Null(await c.ExecuteScalarAsync<string>("SELECT to_regclass('entry_sequence')::text"));

        // Every reader answers the seqs the per-entry rows held: pages from the start and from a cursor, a filter, a transaction.
        // The stores' row mapping, as the service sets it at start-up (this test builds a store without the service).
        DefaultTypeMap.MatchNamesWithUnderscores = true;
        var store = new LedgerReadStore(new ReadDataSource(source, source));
        var all = await store.EntriesAsync(Merchant, new LedgerReadStore.EntryFilter(null, null, null, null, null, null), 0, 100, CancellationToken.None);
        Assert.Equal([(1L, 10L), (2L, 11L), (3L, 12L), (4L, 13L), (5L, 14L), (6L, 15L), (7L, 16L), (8L, 17L)], all.Select(e => (e.Seq, e.EntryId)));
        var afterTwo = await store.EntriesAsync(Merchant, new LedgerReadStore.EntryFilter(null, null, null, null, null, null), 2, 3, CancellationToken.None);
        Assert.Equal([3L, 4L, 5L], afterTwo.Select(e => e.Seq));
        var payable = await store.EntriesAsync(Merchant, new LedgerReadStore.EntryFilter(null, null, "provider_payable", null, null, null), 0, 100, CancellationToken.None);
        Assert.Equal([(3L, 12L), (4L, 13L), (6L, 15L), (8L, 17L)], payable.Select(e => (e.Seq, e.EntryId)));
        var a = await store.TransactionAsync(Merchant, "txn_a", CancellationToken.None);
        Assert.Equal([(1L, 10L), (3L, 12L)], a!.Entries.Select(e => (e.Seq!.Value, e.EntryId)));

        // Numbering goes on after the last seq, one row per transaction, from the queue in its new shape.
        await using (var admin = new NpgsqlConnection(TestDatabase.For(TestDatabase.AdminConnectionString, _database)))
        {
            await admin.ExecuteAsync("""
                SET session_replication_role = replica;
                INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, effective_at) VALUES (@m, 'txn_e', 'manual', 'txn_e', now());
                INSERT INTO entries (merchant_id, entry_id, transaction_id, account_id, currency, amount) OVERRIDING SYSTEM VALUE VALUES
                    (@m, 18, 'txn_e', 'provider_cost', 'USD', 5), (@m, 19, 'txn_e', 'provider_payable', 'USD', -5);
                INSERT INTO entry_unsequenced (merchant_id, first_entry_id, entry_count, entry_ids, transaction_ids)
                VALUES (@m, 18, 2, '{18, 19}', '{txn_e, txn_e}');
                SET session_replication_role = origin;
                """, new { m = Merchant });
        }
        var sequencer = new LedgerSequencer(source, TimeProvider.System, new ConfigurationBuilder().Build(), NullLogger<LedgerSequencer>.Instance);
        Assert.Equal(2L, await sequencer.RunOnceAsync(Merchant, CancellationToken.None));
        Assert.Equal((9L, "18,19"), await c.QuerySingleAsync<(long, string)>(
            "SELECT first_seq, array_to_string(entry_ids, ',') FROM ledger_sequence WHERE merchant_id = @m AND transaction_id = 'txn_e'",
            new { m = Merchant }));
    }
}
