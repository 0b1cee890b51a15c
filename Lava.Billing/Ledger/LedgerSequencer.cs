using Dapper;
using Lava.Billing.Infrastructure.Resilience;
using Npgsql;

namespace Lava.Billing.Ledger;

/// <summary>
/// Numbers committed entries 1, 2, 3 … per merchant (<c>ledger_sequence</c>, a row per ledger transaction), with no gap and never out of order, so
/// exports page by seq and resume exactly (docs/ledger.md, "The ledger sequence"). Runs in the background every
/// <c>Ledger:SequencerIntervalMs</c> (default 1000; 0 turns the loop off), and synchronously from every ledger read so
/// what a reader sees is fresh.
/// </summary>
public sealed class LedgerSequencer(NpgsqlDataSource db, TimeProvider clock, IConfiguration configuration, ILogger<LedgerSequencer> log)
    : BackgroundService
{
    /// <summary>
    /// Entries numbered per transaction: bounds how long the merchant's sequencer lock is held. A transaction takes
    /// queue rows (one per posting statement, at most this many entries each) in order until they hold this many
    /// entries, and always at least one row, so a batch numbers fewer than twice this many.
    /// </summary>
    public const int BatchSize = 10_000;

    // The one query not filtered by merchant: it finds which merchants have work (on Citus, a query on every shard).
    private const string SelectPendingMerchants = """
        SELECT DISTINCT merchant_id FROM entry_unsequenced
        """;

    // Serialises the sequencers of one merchant (a transaction-level lock: released by COMMIT or ROLLBACK), on one instance
    // or several. The database would not let two numberings interleave anyway (new rows must start right after the last
    // committed one, so a second numbering waits on the first's key and is refused); the lock makes it wait instead of fail.
    private const string LockMerchant = """
        SELECT pg_advisory_xact_lock(hashtextextended('lava.entry_sequence:' || @MerchantId, 0))
        """;

    // A statement after the lock, so its snapshot sees the previous batch's commit: the last row gives the true last
    // number. Taking and numbering happen in one transaction, so a batch is all numbered or not at all: no gap. A queue
    // row is taken while the rows before it hold fewer than @BatchSize entries; the first row always is. Each taken
    // transaction becomes one row, its entries in entry_id order from first_seq on (entries of one transaction inserted by
    // two statements are two queue rows, joined here); transactions follow their queue rows' order and, within a row,
    // their smallest entry ids. Answers how many entries it numbered.
    private const string NumberBatch = """
        WITH picked AS (
            SELECT first_entry_id
              FROM (SELECT first_entry_id,
                           sum(entry_count) OVER (ORDER BY first_entry_id) - entry_count AS entries_before
                      FROM (SELECT first_entry_id, entry_count FROM entry_unsequenced
                             WHERE merchant_id = @MerchantId
                             ORDER BY first_entry_id
                             LIMIT @BatchSize) q) w
             WHERE entries_before < @BatchSize
        ), taken AS (
            DELETE FROM entry_unsequenced u
             WHERE u.merchant_id = @MerchantId
               AND u.first_entry_id IN (SELECT first_entry_id FROM picked)
            RETURNING u.first_entry_id, u.entry_ids, u.transaction_ids
        ), transactions AS (
            SELECT min(taken.first_entry_id) AS queue_row, q.transaction_id, min(q.entry_id) AS first_entry_id,
                   array_agg(q.entry_id ORDER BY q.entry_id) AS entry_ids, count(*) AS entries
              FROM taken CROSS JOIN LATERAL unnest(taken.entry_ids, taken.transaction_ids) AS q(entry_id, transaction_id)
             GROUP BY q.transaction_id
        ), last AS (
            SELECT coalesce((SELECT first_seq + cardinality(entry_ids) - 1 FROM ledger_sequence
                              WHERE merchant_id = @MerchantId ORDER BY first_seq DESC LIMIT 1), 0) AS seq
        ), numbered AS (
            INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids)
            SELECT @MerchantId, last.seq + sum(t.entries) OVER (ORDER BY t.queue_row, t.first_entry_id) - t.entries + 1,
                   t.transaction_id, t.entry_ids
              FROM transactions t CROSS JOIN last
            RETURNING cardinality(entry_ids) AS entries
        )
        SELECT coalesce(sum(entries), 0)::int FROM numbered
        """;

    /// <summary>Numbers every entry committed so far, for one merchant or (null) all of them; returns how many.</summary>
    public async Task<long> RunOnceAsync(string? merchantId, CancellationToken ct)
    {
        IEnumerable<string> merchants;
        if (merchantId is not null)
        {
            merchants = [merchantId];
        }
        else
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            merchants = (await connection.QueryAsync<string>(new CommandDefinition(SelectPendingMerchants, cancellationToken: ct))).AsList();
        }
        long numbered = 0;
        foreach (var merchant in merchants)
        {
            try
            {
                int batch;
                do
                {
                    batch = await NumberBatchAsync(merchant, ct);
                    numbered += batch;
                } while (batch >= BatchSize);
            }
            catch (Exception e) when (merchantId is null && OutageLog.IsItemFailure(e, ct))
            {
                // One merchant's failure is its own: the merchants after it are numbered all the same (its readers number
                // what they read themselves, and get the error). The database being away ends the run for everyone.
                log.LogError("Ledger sequencing of merchant {MerchantId} failed ({Failure}: {Reason}); the others go on", merchant,
                    e.GetType().Name, e.Message);
            }
        }
        return numbered;
    }

    private async Task<int> NumberBatchAsync(string merchantId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var args = new { MerchantId = merchantId, BatchSize };
        await connection.ExecuteAsync(new CommandDefinition(LockMerchant, args, tx, cancellationToken: ct));
        var numbered = await connection.ExecuteScalarAsync<int>(new CommandDefinition(NumberBatch, args, tx, cancellationToken: ct));
        await tx.CommitAsync(ct);
        return numbered;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var intervalMs = configuration.GetValue("Ledger:SequencerIntervalMs", 1000);
        if (intervalMs <= 0) return;
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(intervalMs), clock);
        var outage = new OutageLog(log, clock, "Ledger sequencing");
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await RunOnceAsync(null, stoppingToken);
                outage.Succeeded();
            }
            catch (Exception e) when (!stoppingToken.IsCancellationRequested)
            {
                // The next tick retries, and readers number what they read themselves: a failed run must not stop the host.
                if (!outage.Failed(e)) log.LogWarning(e, "Ledger sequencer run failed");
            }
        }
    }
}
