using System.Net;
using Dapper;
using Lava.Billing.Infrastructure;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Ledger;

/// <summary>The database itself refuses what would make the ledger drift, whoever connects.</summary>
public class LedgerInvariantTests(LavaApp app) : ApiTest(app)
{
    private async Task<(string Merchant, string Customer)> ArrangeWithOneReportAsync()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 2));
        await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r", customer_id = customer, meter_slug = "gpt" });
        return (m.MerchantId, customer);
    }

    private async Task<PostgresException> RefusedAsync(string sql, object? args = null)
    {
        await using var c = new NpgsqlConnection(App.ConnectionString);
        return await Assert.ThrowsAsync<PostgresException>(() => c.ExecuteAsync(sql, args));
    }

    // One row of the ledger sequence, written by hand as the tests below write it.
    private const string InsertSequenceRow =
        "INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids) VALUES (@merchant, @first, @t, @ids)";

    /// <summary>A merchant with one report numbered by the sequencer, and the seq its next sequence row must start at.</summary>
    private async Task<(string Merchant, long Next)> NumberedMerchantAsync()
    {
        var (merchant, _) = await ArrangeWithOneReportAsync();
        await App.Services.GetRequiredService<LedgerSequencer>().RunOnceAsync(merchant, CancellationToken.None);
        var next = await App.QueryAsync<long>(
            "SELECT max(first_seq + cardinality(entry_ids)) FROM ledger_sequence WHERE merchant_id = @merchant", new { merchant });
        return (merchant, next);
    }

    [Fact]
    public async Task EntriesCannotBeUpdatedOrDeleted()
    {
        await ArrangeWithOneReportAsync();
        Assert.Contains("append-only", (await RefusedAsync("UPDATE entries SET amount = amount * 2")).MessageText);
        Assert.Contains("append-only", (await RefusedAsync("DELETE FROM entries")).MessageText);
        Assert.Contains("append-only", (await RefusedAsync("TRUNCATE entries CASCADE")).MessageText);
        Assert.Contains("append-only", (await RefusedAsync("UPDATE ledger_transactions SET reference = 'x'")).MessageText);
        Assert.Contains("append-only", (await RefusedAsync("DELETE FROM ledger_transactions")).MessageText);
    }

    [Fact]
    public async Task ASeqOrAnEntryIsNeverNumberedTwice()
    {
        var (merchant, next) = await NumberedMerchantAsync();
        await using var c = new NpgsqlConnection(App.ConnectionString);
        var row = await c.QuerySingleAsync<(long FirstSeq, string TransactionId, long[] EntryIds)>(
            "SELECT first_seq, transaction_id, entry_ids FROM ledger_sequence WHERE merchant_id = @merchant ORDER BY first_seq LIMIT 1", new { merchant });
        Assert.Equal(1L, row.FirstSeq);
        Assert.True(row.EntryIds.Length >= 2);

        // The row holds seqs 1 … n: a row starting inside it (not at its key) overlaps it.
        var overlap = await RefusedAsync(InsertSequenceRow, new { merchant, first = 2L, t = "txn_other", ids = new[] { -1L } });
        Assert.Equal(PostgresErrorCodes.ExclusionViolation, overlap.SqlState);
        // Seqs start at 1.
        Assert.Equal(PostgresErrorCodes.CheckViolation,
            (await RefusedAsync(InsertSequenceRow, new { merchant, first = 0L, t = "txn_other", ids = new[] { -1L } })).SqlState);
        Assert.Contains("overlaps the one before it", overlap.MessageText);
        Assert.Equal(PostgresErrorCodes.UniqueViolation,
            (await RefusedAsync(InsertSequenceRow, new { merchant, first = 1L, t = "txn_other", ids = new[] { -1L } })).SqlState);
        // The transaction's entry again, after the last seq: the seqs are free, but the entry already has one.
        var again = await RefusedAsync(InsertSequenceRow, new { merchant, first = next, t = row.TransactionId, ids = new[] { row.EntryIds[^1] } });
        Assert.Equal(PostgresErrorCodes.UniqueViolation, again.SqlState);
        Assert.Contains("numbered twice", again.MessageText);
        // A second row in one statement that overlaps the first one.
        Assert.Equal(PostgresErrorCodes.ExclusionViolation, (await RefusedAsync("""
            INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids)
            VALUES (@merchant, @next, 'txn_x', '{-1, -2}'), (@merchant, @next + 1, 'txn_y', '{-3}')
            """, new { merchant, next })).SqlState);

        // Two rows of one transaction in one statement naming the same entry.
        Assert.Equal(PostgresErrorCodes.UniqueViolation, (await RefusedAsync("""
            INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids)
            VALUES (@merchant, @next, 'txn_x', '{-1}'), (@merchant, @next + 1, 'txn_x', '{-1}')
            """, new { merchant, next })).SqlState);

        // What the sequencer does next is still allowed: the next seq, another transaction.
        await c.ExecuteAsync(InsertSequenceRow, new { merchant, first = next, t = "txn_other", ids = new[] { -1L } });
    }

    [Fact]
    public async Task ARowNamingOneEntryTwiceWithinItselfIsRefusedThoughNoOtherRowNamesIt()
    {
        var (merchant, next) = await NumberedMerchantAsync();

        // Seqs next and next + 1 would both be entry -5: an export would list it twice.
        var refused = await RefusedAsync(InsertSequenceRow, new { merchant, first = next, t = "txn_other", ids = new[] { -5L, -5L } });
        Assert.Equal(PostgresErrorCodes.UniqueViolation, refused.SqlState);
        Assert.Contains($"the row at seq {next} of merchant {merchant} names one entry twice", refused.MessageText);
        // Among other entries, and in a statement whose other row is sound.
        Assert.Contains("names one entry twice", (await RefusedAsync("""
            INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids)
            VALUES (@merchant, @next, 'txn_x', '{-1, -2}'), (@merchant, @next + 2, 'txn_y', '{-3, -4, -3}')
            """, new { merchant, next })).MessageText);

        // Distinct entries in one row are what the sequencer writes.
        await using var c = new NpgsqlConnection(App.ConnectionString);
        await c.ExecuteAsync(InsertSequenceRow, new { merchant, first = next, t = "txn_other", ids = new[] { -5L, -6L } });
    }

    [Fact]
    public async Task ARowNamingNoEntryAtOneOfItsSeqsIsRefusedAsSuch()
    {
        var (merchant, next) = await NumberedMerchantAsync();

        // Seq next + 1 would name nothing: a hole in every export. Refused for that, not as an entry named twice.
        var refused = await RefusedAsync(InsertSequenceRow, new { merchant, first = next, t = "txn_other", ids = new long?[] { -5L, null } });
        Assert.Equal(PostgresErrorCodes.CheckViolation, refused.SqlState);
        Assert.Equal("ledger_sequence_entry_ids_not_null", refused.ConstraintName);
        Assert.Equal(PostgresErrorCodes.CheckViolation,
            (await RefusedAsync(InsertSequenceRow, new { merchant, first = next, t = "txn_other", ids = new long?[] { null } })).SqlState);
    }

    [Fact]
    public async Task ASeqIsNeverSkippedNewRowsFollowTheLastOneWithNoGap()
    {
        var (merchant, next) = await NumberedMerchantAsync();
        await using var c = new NpgsqlConnection(App.ConnectionString);

        // One number left out after the last row.
        var skipped = await RefusedAsync(InsertSequenceRow, new { merchant, first = next + 1, t = "txn_other", ids = new[] { -1L } });
        Assert.Equal(PostgresErrorCodes.CheckViolation, skipped.SqlState);
        Assert.Contains($"seqs {next} to {next} of merchant {merchant} would be skipped", skipped.MessageText);
        // Rows of one statement with a hole between them, though the first follows the last row.
        Assert.Equal(PostgresErrorCodes.CheckViolation, (await RefusedAsync("""
            INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids)
            VALUES (@merchant, @next, 'txn_x', '{-1, -2}'), (@merchant, @next + 3, 'txn_y', '{-3}')
            """, new { merchant, next })).SqlState);
        // A merchant's first row starts at 1.
        var other = await App.NewMerchantAsync("Other");
        Assert.Equal(PostgresErrorCodes.CheckViolation,
            (await RefusedAsync(InsertSequenceRow, new { merchant = other.MerchantId, first = 2L, t = "txn_other", ids = new[] { -1L } })).SqlState);

        // Contiguous rows after the last one, in one statement, are what the sequencer writes.
        await c.ExecuteAsync("""
            INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids)
            VALUES (@merchant, @next, 'txn_x', '{-1, -2}'), (@merchant, @next + 2, 'txn_y', '{-3}')
            """, new { merchant, next });
        await c.ExecuteAsync(InsertSequenceRow, new { merchant = other.MerchantId, first = 1L, t = "txn_other", ids = new[] { -1L } });
    }

    [Fact]
    public async Task ARowStartingBelowTheMerchantsLastSeqIsRefusedEvenWhereAHoleWouldFitIt()
    {
        var (merchant, next) = await NumberedMerchantAsync();
        // A hole before a row that only a superuser with the triggers off could have written: seqs next to next + 4.
        await using (var admin = new NpgsqlConnection(App.AdminConnectionString))
        {
            await admin.ExecuteAsync("""
                SET session_replication_role = replica;
                INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids) VALUES (@merchant, @first, 'txn_later', '{-9}');
                SET session_replication_role = origin;
                """, new { merchant, first = next + 5 });
        }

        // It fits the hole and overlaps nothing, yet the merchant's last seq is past it.
        var refused = await RefusedAsync(
            "INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids) VALUES (@merchant, @next, 'txn_other', '{-1, -2}')",
            new { merchant, next });
        Assert.Equal(PostgresErrorCodes.ExclusionViolation, refused.SqlState);
        Assert.Contains($"has seqs after {next} already", refused.MessageText);
    }

    [Fact]
    public async Task TwoNumberingsOfOneMerchantCannotInterleaveEvenWithoutTheSequencersLock()
    {
        var (merchant, next) = await NumberedMerchantAsync();
        await using var first = new NpgsqlConnection(App.ConnectionString);
        await first.OpenAsync();
        await using var firstTx = await first.BeginTransactionAsync();
        await first.ExecuteAsync(InsertSequenceRow, new { merchant, first = next, t = "txn_a", ids = new[] { -1L, -2L } }, firstTx);

        // The second numbering does not see the first's rows yet: after them is a gap from where it stands.
        Assert.Equal(PostgresErrorCodes.CheckViolation,
            (await RefusedAsync(InsertSequenceRow, new { merchant, first = next + 2, t = "txn_b", ids = new[] { -3L } })).SqlState);
        // Where it stands, it meets the first's key, waits for it to commit, and is refused.
        await using var second = new NpgsqlConnection(App.ConnectionString);
        var waiting = Assert.ThrowsAsync<PostgresException>(() => second.ExecuteAsync(InsertSequenceRow, new { merchant, first = next, t = "txn_b", ids = new[] { -3L } }));
        await Task.Delay(300);
        Assert.False(waiting.IsCompleted);
        await firstTx.CommitAsync();
        Assert.Equal(PostgresErrorCodes.UniqueViolation, (await waiting).SqlState);
    }

    [Fact]
    public async Task CustomersAndMerchantsAreNeverDeletedNorGivenAnotherKey()
    {
        var (merchant, customer) = await ArrangeWithOneReportAsync();
        var args = new { m = merchant, c = customer };
        foreach (var sql in new[]
                 {
                     "DELETE FROM customers WHERE merchant_id = @m AND customer_id = @c",
                     "UPDATE customers SET customer_id = 'cus_renamed' WHERE merchant_id = @m AND customer_id = @c",
                     "TRUNCATE customers CASCADE",
                     "DELETE FROM merchants WHERE merchant_id = @m",
                     "UPDATE merchants SET merchant_id = 'mer_renamed' WHERE merchant_id = @m",
                 })
        {
            var e = await RefusedAsync(sql, args);
            Assert.Equal(PostgresErrorCodes.RestrictViolation, e.SqlState);
            Assert.Contains("never deleted", e.MessageText);
        }
        await using var c = new NpgsqlConnection(App.ConnectionString);
        Assert.Equal(1, await c.ExecuteAsync("UPDATE customers SET deleted_at = now() WHERE merchant_id = @m AND customer_id = @c", args));
    }

    [Fact]
    public async Task ARequestOrLedgerTransactionNamingWhatDoesNotExistIsRefused()
    {
        var (merchant, _) = await ArrangeWithOneReportAsync();
        const string copyOfR = """
            INSERT INTO requests (merchant_id, request_id, fingerprint, mode, customer_id, meter_id, price_version, input_tokens,
                                  output_tokens, input_characters, output_characters, input_seconds, output_seconds, cost,
                                  charge_amount, metadata, occurred_at, created_at, transaction_id, status_code, response, hold_id)
            SELECT merchant_id, 'r2', fingerprint, mode, {0}, meter_id, price_version, input_tokens, output_tokens,
                   input_characters, output_characters, input_seconds, output_seconds, cost, charge_amount, metadata,
                   occurred_at, created_at, {1}, status_code, response, hold_id
              FROM requests WHERE merchant_id = @m AND request_id = 'r'
            """;
        var args = new { m = merchant };
        var unknownCustomer = await RefusedAsync(string.Format(copyOfR, "'cus_nobody'", "transaction_id"), args);
        Assert.Equal(PostgresErrorCodes.ForeignKeyViolation, unknownCustomer.SqlState);
        Assert.Contains("cus_nobody", unknownCustomer.MessageText);
        var unknownTransaction = await RefusedAsync(string.Format(copyOfR, "customer_id", "'txn_nowhere'"), args);
        Assert.Equal(PostgresErrorCodes.ForeignKeyViolation, unknownTransaction.SqlState);
        Assert.Contains("txn_nowhere", unknownTransaction.MessageText);
        var renamed = await RefusedAsync("UPDATE requests SET customer_id = 'cus_nobody' WHERE merchant_id = @m", args);
        Assert.Equal(PostgresErrorCodes.ForeignKeyViolation, renamed.SqlState);
        var unknownMerchant = await RefusedAsync(
            "INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, effective_at) VALUES ('mer_nobody', 'txn_x', 'manual', 'x', now())");
        Assert.Equal(PostgresErrorCodes.ForeignKeyViolation, unknownMerchant.SqlState);
        Assert.Contains("mer_nobody", unknownMerchant.MessageText);

        await using var c = new NpgsqlConnection(App.ConnectionString);
        Assert.Equal(1, await c.ExecuteAsync(string.Format(copyOfR, "customer_id", "transaction_id"), args));
    }

    /// <summary>Request r again as <paramref name="requestId"/>, naming another meter price.</summary>
    private const string CopyOfRNamingPrice = """
        INSERT INTO requests (merchant_id, request_id, fingerprint, mode, customer_id, meter_id, price_version, input_tokens,
                              output_tokens, input_characters, output_characters, input_seconds, output_seconds, cost,
                              charge_amount, metadata, occurred_at, created_at, transaction_id, status_code, response, hold_id)
        SELECT merchant_id, @requestId, fingerprint, mode, customer_id, @meter, @version, input_tokens, output_tokens,
               input_characters, output_characters, input_seconds, output_seconds, cost, charge_amount, metadata,
               occurred_at, created_at, transaction_id, status_code, response, hold_id
          FROM requests WHERE merchant_id = @m AND request_id = 'r'
        """;

    [Fact]
    public async Task ARequestNamingAPriceThatDoesNotExistIsRefusedAndANamedPriceIsNeverDeletedNorChanged()
    {
        var (merchant, _) = await ArrangeWithOneReportAsync();
        var meter = await App.QueryAsync<string>("SELECT meter_id FROM requests WHERE merchant_id = @m AND request_id = 'r'", new { m = merchant });
        var args = new { m = merchant, meter };

        var unknownVersion = await RefusedAsync(CopyOfRNamingPrice, new { m = merchant, requestId = "r2", meter, version = 99 });
        Assert.Equal(PostgresErrorCodes.ForeignKeyViolation, unknownVersion.SqlState);
        Assert.Contains("version 99", unknownVersion.MessageText);
        var named = await RefusedAsync("DELETE FROM meter_prices WHERE merchant_id = @m AND meter_id = @meter", args);
        Assert.Equal(PostgresErrorCodes.ForeignKeyViolation, named.SqlState);
        Assert.Contains("named by requests", named.MessageText);
        Assert.Equal(PostgresErrorCodes.ForeignKeyViolation,
            (await RefusedAsync("DELETE FROM meters WHERE merchant_id = @m AND meter_id = @meter", args)).SqlState);
        Assert.Contains("never changed", (await RefusedAsync("UPDATE meter_prices SET version = 7 WHERE merchant_id = @m AND meter_id = @meter", args)).MessageText);
        Assert.Contains("never changed", (await RefusedAsync("TRUNCATE meter_prices CASCADE")).MessageText);
        // Only under READ COMMITTED does the delete's check see a request committed while it waited; elsewhere it is refused.
        var unused = await App.MeterAsync(merchant, "unused", "fixed", "requests", (0, 1));
        var repeatable = await RefusedAsync("""
            BEGIN ISOLATION LEVEL REPEATABLE READ;
            DELETE FROM meters WHERE merchant_id = @m AND meter_id = @meter;
            COMMIT;
            """, new { m = merchant, meter = unused });
        Assert.Contains("only under READ COMMITTED", repeatable.MessageText);

        await using var c = new NpgsqlConnection(App.ConnectionString);
        Assert.Equal(1, await c.ExecuteAsync(CopyOfRNamingPrice, new { m = merchant, requestId = "r2", meter, version = 1 }));
        Assert.Equal(1, await c.ExecuteAsync("DELETE FROM meters WHERE merchant_id = @m AND meter_id = @meter", new { m = merchant, meter = unused }));
    }

    [Fact]
    public async Task ADeleteOfAPriceAndAPostingNamingItOrderOnTheLockAndTheSecondIsRefused()
    {
        var (merchant, _) = await ArrangeWithOneReportAsync();
        await using var posting = new NpgsqlConnection(App.ConnectionString);
        await using var deleting = new NpgsqlConnection(App.ConnectionString);
        await posting.OpenAsync();
        await deleting.OpenAsync();
        const string deleteMeter = "DELETE FROM meters WHERE merchant_id = @m AND meter_id = @meter";

        // The posting first: the delete of the never-used meter waits for it, then finds the request and is refused.
        var first = await App.MeterAsync(merchant, "first", "fixed", "requests", (0, 1));
        await using (var tx = await posting.BeginTransactionAsync())
        {
            await posting.ExecuteAsync(CopyOfRNamingPrice, new { m = merchant, requestId = "r2", meter = first, version = 1 }, tx);
            var delete = deleting.ExecuteAsync(deleteMeter, new { m = merchant, meter = first });
            await Task.Delay(300);
            Assert.False(delete.IsCompleted);
            await tx.CommitAsync();
            var refused = await Assert.ThrowsAsync<PostgresException>(() => delete);
            Assert.Equal(PostgresErrorCodes.ForeignKeyViolation, refused.SqlState);
        }

        // The delete first: the posting waits for it, then finds the price gone and is refused.
        var second = await App.MeterAsync(merchant, "second", "fixed", "requests", (0, 1));
        await using (var tx = await deleting.BeginTransactionAsync())
        {
            Assert.Equal(1, await deleting.ExecuteAsync(deleteMeter, new { m = merchant, meter = second }, tx));
            var post = posting.ExecuteAsync(CopyOfRNamingPrice, new { m = merchant, requestId = "r3", meter = second, version = 1 });
            await Task.Delay(300);
            Assert.False(post.IsCompleted);
            await tx.CommitAsync();
            var refused = await Assert.ThrowsAsync<PostgresException>(() => post);
            Assert.Equal(PostgresErrorCodes.ForeignKeyViolation, refused.SqlState);
        }

        Assert.Equal("first", await App.QueryAsync<string>(
            "SELECT string_agg(meter_slug, ',') FROM meters WHERE merchant_id = @m AND meter_slug IN ('first', 'second')", new { m = merchant }));
        Assert.Equal(0L, await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m AND request_id = 'r3'", new { m = merchant }));
    }

    [Fact]
    public async Task AnUnbalancedTransactionIsRefused()
    {
        var (merchant, customer) = await ArrangeWithOneReportAsync();
        var e = await RefusedAsync("""
            BEGIN;
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, effective_at) VALUES (@m, @t, 'manual', @t, now());
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount) VALUES (@m, @t, @a, 'USD', 1), (@m, @t, 'usage_revenue', 'USD', -0.9999999999);
            COMMIT;
            """, new { m = merchant, t = Ids.New("txn"), a = LedgerAccounts.Receivable(customer) });
        Assert.Contains("does not balance", e.MessageText);
        Assert.Equal(PostgresErrorCodes.CheckViolation, e.SqlState);
        Assert.Equal(2m, await App.BalanceAsync(merchant, LedgerAccounts.Receivable(customer)));
    }

    [Fact]
    public async Task ATransactionMustBalanceInTheStatementThatPostsIt()
    {
        // Two statements that balance only together: the first is refused, whatever the second would have done.
        var (merchant, customer) = await ArrangeWithOneReportAsync();
        var e = await RefusedAsync("""
            BEGIN;
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, effective_at) VALUES (@m, @t, 'manual', @t, now());
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount) VALUES (@m, @t, @a, 'USD', 1);
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount) VALUES (@m, @t, 'usage_revenue', 'USD', -1);
            COMMIT;
            """, new { m = merchant, t = Ids.New("txn"), a = LedgerAccounts.Receivable(customer) });
        Assert.Contains("does not balance", e.MessageText);
        Assert.Equal(2m, await App.BalanceAsync(merchant, LedgerAccounts.Receivable(customer)));
    }

    [Fact]
    public async Task ABalancedStatementOfManyTransactionsIsCheckedPerTransaction()
    {
        // Two transactions that are each off by one cent in opposite directions: the statement sums to zero, each
        // transaction does not.
        var (merchant, customer) = await ArrangeWithOneReportAsync();
        var e = await RefusedAsync("""
            BEGIN;
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, effective_at)
                 VALUES (@m, @t1, 'manual', @t1, now()), (@m, @t2, 'manual', @t2, now());
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount)
                 VALUES (@m, @t1, @a, 'USD', 1), (@m, @t1, 'usage_revenue', 'USD', -0.99),
                        (@m, @t2, @a, 'USD', 1), (@m, @t2, 'usage_revenue', 'USD', -1.01);
            COMMIT;
            """, new { m = merchant, t1 = Ids.New("txn"), t2 = Ids.New("txn"), a = LedgerAccounts.Receivable(customer) });
        Assert.Contains("does not balance", e.MessageText);
        Assert.Equal(2m, await App.BalanceAsync(merchant, LedgerAccounts.Receivable(customer)));
    }

    [Fact]
    public async Task AnEntryInAnotherCurrencyThanItsAccountIsRefused()
    {
        var (merchant, customer) = await ArrangeWithOneReportAsync();
        var e = await RefusedAsync("""
            BEGIN;
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, effective_at) VALUES (@m, @t, 'manual', @t, now());
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount) VALUES (@m, @t, @a, 'EUR', 1), (@m, @t, 'usage_revenue', 'EUR', -1);
            COMMIT;
            """, new { m = merchant, t = Ids.New("txn"), a = LedgerAccounts.Receivable(customer) });
        Assert.Equal(PostgresErrorCodes.ForeignKeyViolation, e.SqlState);
        Assert.Contains("does not exist in that currency", e.MessageText);
    }

    [Fact]
    public async Task AnEntryForAnUnknownAccountOrTransactionIsRefused()
    {
        var (merchant, customer) = await ArrangeWithOneReportAsync();
        var unknownAccount = await RefusedAsync("""
            BEGIN;
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, effective_at) VALUES (@m, @t, 'manual', @t, now());
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount) VALUES (@m, @t, 'cus_nobody:receivable', 'USD', 1), (@m, @t, 'usage_revenue', 'USD', -1);
            COMMIT;
            """, new { m = merchant, t = Ids.New("txn") });
        Assert.Equal(PostgresErrorCodes.ForeignKeyViolation, unknownAccount.SqlState);
        var unknownTransaction = await RefusedAsync("""
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount) VALUES (@m, 'txn_nowhere', @a, 'USD', 1), (@m, 'txn_nowhere', 'usage_revenue', 'USD', -1);
            """, new { m = merchant, a = LedgerAccounts.Receivable(customer) });
        Assert.Equal(PostgresErrorCodes.ForeignKeyViolation, unknownTransaction.SqlState);
        Assert.Contains("txn_nowhere", unknownTransaction.MessageText);
        Assert.Equal(2m, await App.BalanceAsync(merchant, LedgerAccounts.Receivable(customer)));
    }

    [Fact]
    public async Task AccountsCannotBeChangedOrRemoved()
    {
        // The entries check takes no lock on the accounts it reads: it can because an account, once opened, never changes.
        var (merchant, customer) = await ArrangeWithOneReportAsync();
        var args = new { m = merchant, a = LedgerAccounts.Receivable(customer) };
        Assert.Contains("append-only", (await RefusedAsync("UPDATE accounts SET currency = 'EUR' WHERE merchant_id = @m AND account_id = @a", args)).MessageText);
        Assert.Contains("append-only", (await RefusedAsync("DELETE FROM accounts WHERE merchant_id = @m AND account_id = @a", args)).MessageText);
        Assert.Contains("append-only", (await RefusedAsync("TRUNCATE accounts CASCADE")).MessageText);
    }

    [Fact]
    public async Task TheDatabaseKeepsRequestIdsPrintableAsciiUpTo255Characters()
    {
        var (merchant, _) = await ArrangeWithOneReportAsync();
        foreach (var bad in new[] { "", "tab\there", "caf\u00e9", new string('x', 256) })
        {
            var e = await RefusedAsync("UPDATE requests SET request_id = @id WHERE merchant_id = @m", new { m = merchant, id = bad });
            Assert.Equal(PostgresErrorCodes.CheckViolation, e.SqlState);
        }
        await using var c = new NpgsqlConnection(App.ConnectionString);
        var longest = " !~" + new string('z', 252);
        Assert.Equal(1, await c.ExecuteAsync("UPDATE requests SET request_id = @id WHERE merchant_id = @m", new { m = merchant, id = longest }));
    }

    [Fact]
    public async Task ACachedBalanceCannotBeWrittenDirectly()
    {
        var (merchant, customer) = await ArrangeWithOneReportAsync();
        var e = await RefusedAsync("UPDATE account_balances SET balance = 0 WHERE merchant_id = @m", new { m = merchant });
        Assert.Contains("maintained by the ledger", e.MessageText);
        await RefusedAsync("DELETE FROM account_balances");
        await RefusedAsync("DELETE FROM account_balances WHERE false");
        Assert.Contains("maintained by the ledger", (await RefusedAsync("TRUNCATE account_balances")).MessageText);
        await RefusedAsync("UPDATE account_balances SET account_id = account_id || 'x' WHERE merchant_id = @m", new { m = merchant });
        await RefusedAsync("INSERT INTO account_balances (merchant_id, account_id, balance) VALUES (@m, @a, 5)",
            new { m = merchant, a = LedgerAccounts.Receivable(await App.CustomerAsync(merchant)) });
        Assert.Equal(2m, await App.BalanceAsync(merchant, LedgerAccounts.Receivable(customer)));
    }

    [Fact]
    public async Task TheBalanceRowGuardIsBoundToInsertsAlone()
    {
        // It checks only that a balance starts at zero: bound to an update or a delete it would let them by. Those are
        // refused by the statement guards (ACachedBalanceCannotBeWrittenDirectly).
        await using var c = new NpgsqlConnection(App.ConnectionString);
        var bindings = await c.QueryAsync<string>(
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgfoid = 'ledger_guard_balances'::regproc AND NOT tgisinternal");

        Assert.Equal(
            ["CREATE TRIGGER account_balances_guard BEFORE INSERT ON public.account_balances FOR EACH ROW EXECUTE FUNCTION ledger_guard_balances()"],
            bindings);
    }

    [Fact]
    public async Task ABalanceRowKeepsItsKeyEvenWhenATriggerChangesIt()
    {
        // The ledger's own update runs inside a trigger and sets only the balance; an update from inside any other
        // trigger passes the balance guard too, but never one that renames the row.
        var (merchant, customer) = await ArrangeWithOneReportAsync();
        await using var c = new NpgsqlConnection(App.ConnectionString);
        await c.OpenAsync();
        await c.ExecuteAsync("""
            CREATE TEMP TABLE rename_balance (merchant_id text, account_id text);
            CREATE FUNCTION pg_temp.rename_balance() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE account_balances SET account_id = NEW.account_id || '-renamed'
                 WHERE merchant_id = NEW.merchant_id AND account_id = NEW.account_id;
                RETURN NULL;
            END $$;
            CREATE TRIGGER rename_balance AFTER INSERT ON rename_balance FOR EACH ROW EXECUTE FUNCTION pg_temp.rename_balance();
            """);
        var e = await Assert.ThrowsAsync<PostgresException>(() => c.ExecuteAsync(
            "INSERT INTO rename_balance VALUES (@m, @a)", new { m = merchant, a = LedgerAccounts.Receivable(customer) }));
        Assert.Contains("maintained by the ledger", e.MessageText);
        Assert.Equal(2m, await App.BalanceAsync(merchant, LedgerAccounts.Receivable(customer)));
    }

    [Fact]
    public async Task AfterManyConcurrentRandomReportsTheLedgerBalances()
    {
        var m = await App.NewMerchantAsync();
        var customers = new List<string>();
        for (var i = 0; i < 5; i++) customers.Add(await App.CustomerAsync(m.MerchantId));
        await App.MeterAsync(m.MerchantId, "grad", "fixed", "tokens_1m", (0, 5), (1_000, 3.3333333333m), (50_000, 0.0000001m));
        await App.MeterAsync(m.MerchantId, "pct", "percentage", "requests", (0, 17.5m));
        await App.GrantAsync(m.MerchantId, customers[0], 0.37m);
        await App.GrantAsync(m.MerchantId, customers[1], 1m, "bundle");

        var random = new Random(20261122);
        var reports = Enumerable.Range(0, 120).Select(i => new
        {
            request_id = $"r{i % 100}",  // 20 replays or conflicts among them
            customer_id = random.Next(6) == 0 ? null : customers[random.Next(customers.Count)],
            meter_slug = random.Next(2) == 0 ? "grad" : "pct",
            input_tokens = random.Next(0, 30_000),
            cost = (random.Next(0, 1_000_000) / 1_000_000m).ToString(System.Globalization.CultureInfo.InvariantCulture),
        }).ToList();
        var clients = Enumerable.Range(0, 8).Select(_ => App.ClientWithKey(m.SecretKey)).ToList();
        var statuses = new System.Collections.Concurrent.ConcurrentBag<HttpStatusCode>();
        await Parallel.ForEachAsync(reports.Select((r, i) => (r, i)), new ParallelOptions { MaxDegreeOfParallelism = 8 },
            async (x, _) => statuses.Add((await clients[x.i % 8].PostJsonAsync("/v1/requests", x.r)).Status));

        // Every report was answered: created or replayed (201), or a different payload under a used id (409).
        Assert.All(statuses, s => Assert.Contains(s, new[] { HttpStatusCode.Created, HttpStatusCode.Conflict }));
        Assert.Equal(reports.Select(r => r.request_id).Distinct().Count(),
            await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", new { m = m.MerchantId }));

        var args = new { m = m.MerchantId };
        Assert.Equal(0m, await App.QueryAsync<decimal>("SELECT coalesce(sum(amount), 0) FROM entries WHERE merchant_id = @m", args));
        Assert.Equal(0, await App.QueryAsync<long>("""
            SELECT count(*) FROM account_balances b
             WHERE b.merchant_id = @m
               AND b.balance <> (SELECT coalesce(sum(e.amount), 0) FROM entries e WHERE e.merchant_id = b.merchant_id AND e.account_id = b.account_id)
            """, args));
        Assert.Equal(
            await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", args),
            await App.QueryAsync<long>("SELECT count(*) FROM ledger_transactions WHERE merchant_id = @m AND kind = 'usage'", args));
        // Revenue is exactly the sum of the charges billed to customers.
        Assert.Equal(
            await App.QueryAsync<decimal>("SELECT coalesce(sum(charge_amount), 0) FROM requests WHERE merchant_id = @m AND customer_id IS NOT NULL", args),
            -await App.EntriesSumAsync(m.MerchantId, LedgerAccounts.UsageRevenue));
    }
}
