using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using Dapper;
using Lava.Billing.Infrastructure;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Finance;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Ledger;

public class LedgerVerifyTests(LavaApp app) : ApiTest(app)
{
    private async Task<(LavaApp.Merchant M, string Customer)> ArrangeAsync()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "tokens_1m", (0, 5), (1_000, 3));
        await App.MeterAsync(m.MerchantId, "pct", "percentage", "requests", (0, 20));
        await App.GrantAsync(m.MerchantId, customer, 0.004m);
        await m.ReportAsync("a", customer, "gpt", inputTokens: 1_500, cost: "0.002");
        await m.ReportAsync("b", null, "pct", cost: "0.5");
        await m.ReportAsync("c", customer, "pct", cost: "0.25");
        return (m, customer);
    }

    /// <summary>Writes past the ledger's guards, as only a superuser with triggers off can.</summary>
    private async Task CorruptAsync(string sql, object args)
    {
        await using var admin = new NpgsqlConnection(App.AdminConnectionString);
        await admin.ExecuteAsync("SET session_replication_role = replica;\n" + sql.TrimEnd().TrimEnd(';') + ";\nSET session_replication_role = origin;", args);
    }

    /// <summary>The merchant's last ledger sequence row.</summary>
    private Task<(long FirstSeq, string TransactionId, long[] EntryIds)> LastSequenceRowAsync(string merchantId) =>
        App.QueryAsync<(long FirstSeq, string TransactionId, long[] EntryIds)>(
            "SELECT first_seq, transaction_id, entry_ids FROM ledger_sequence WHERE merchant_id = @m ORDER BY first_seq DESC LIMIT 1",
            new { m = merchantId });

    private static List<JsonNode> Problems(JsonNode report, string check) =>
        report["problems"]!.AsArray().Where(p => (string)p!["check"]! == check).Select(p => p!).ToList();

    [Fact]
    public async Task ASoundLedgerVerifiesWithNoProblems()
    {
        var (m, _) = await ArrangeAsync();
        var r = await m.Client.GetJsonAsync("/v1/ledger/verify");
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.True((bool)r.Body!["ok"]!, r.Body.ToJsonString());
        Assert.Empty(r.Body["problems"]!.AsArray());
        Assert.Equal(LedgerVerifier.Checks, r.Body["checks"]!.AsArray().Select(c => (string)c!));
        Assert.NotNull((string?)r.Body["checked_at"]);
    }

    [Fact]
    public async Task VerificationFindsAnAmountPastItsBound()
    {
        var (m, customer) = await ArrangeAsync();
        var receivable = LedgerAccounts.Receivable(customer);
        var hugeAmount = 5_000_000_000_000_000_000m;
        await using var owner = new NpgsqlConnection(App.ConnectionString);
        // With the bounds dropped (as a restore of an old dump, or a hand on the schema, could leave them), a balanced
        // posting no reader could load: 5e18 at 10 places is past what a decimal holds.
        await owner.ExecuteAsync("""
            ALTER TABLE entries DROP CONSTRAINT entries_amount_bound;
            ALTER TABLE account_balances DROP CONSTRAINT account_balances_balance_bound;
            BEGIN;
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, customer_id, effective_at)
            VALUES (@m, 'txn_huge', 'test_overage', 'txn_huge', @c, now());
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount) VALUES
                (@m, 'txn_huge', @receivable, 'USD', @amount), (@m, 'txn_huge', 'usage_revenue', 'USD', -@amount);
            COMMIT;
            """, new { m = m.MerchantId, c = customer, receivable, amount = hugeAmount });
        try
        {
            var report = (await m.Client.GetJsonAsync("/v1/ledger/verify")).Body!;

            Assert.False((bool)report["ok"]!);
            var found = Problems(report, "amounts_in_bounds");
            Assert.Contains(found, p => (string?)p["account_id"] == receivable);
            Assert.Equal(2, found.Count(p => (string?)p["transaction_id"] == "txn_huge"));
            Assert.Empty(Problems(report, "cached_balances"));
        }
        finally
        {
            // Back as they were for this class's other tests (NOT VALID: the reset empties the tables before the next).
            await owner.ExecuteAsync("""
                ALTER TABLE entries ADD CONSTRAINT entries_amount_bound
                    CHECK (amount BETWEEN -1000000000000000000 AND 1000000000000000000) NOT VALID;
                ALTER TABLE account_balances ADD CONSTRAINT account_balances_balance_bound
                    CHECK (balance BETWEEN -1000000000000000000 AND 1000000000000000000) NOT VALID;
                """);
        }
    }

    [Fact]
    public async Task VerificationFindsACorruptedCachedBalance()
    {
        var (m, customer) = await ArrangeAsync();
        var receivable = LedgerAccounts.Receivable(customer);
        var truth = await App.BalanceAsync(m.MerchantId, receivable);
        await CorruptAsync("UPDATE account_balances SET balance = balance + 0.0000000001 WHERE merchant_id = @m AND account_id = @a",
            new { m = m.MerchantId, a = receivable });

        var report = (await m.Client.GetJsonAsync("/v1/ledger/verify")).Body!;

        Assert.False((bool)report["ok"]!);
        var problem = Assert.Single(report["problems"]!.AsArray())!;
        Assert.Equal("cached_balances", (string)problem["check"]!);
        Assert.Equal(receivable, (string)problem["account_id"]!);
        Assert.Equal(Money.Format(truth), (string)problem["expected"]!);
        Assert.Equal(Money.Format(truth + 0.0000000001m), (string)problem["actual"]!);
        Assert.Contains(receivable, (string)problem["detail"]!);

        // Another merchant's ledger is its own business.
        var other = await App.NewMerchantAsync("Other");
        Assert.True((bool)(await other.Client.GetJsonAsync("/v1/ledger/verify")).Body!["ok"]!);
    }

    [Fact]
    public async Task ASeqNamingNoEntryOfItsTransactionIsReportedAsAGap()
    {
        var (m, _) = await ArrangeAsync();
        await App.Services.GetRequiredService<LedgerSequencer>().RunOnceAsync(m.MerchantId, CancellationToken.None);
        await CorruptAsync("""
            INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids)
            SELECT merchant_id, max(first_seq + cardinality(entry_ids)), min(transaction_id), '{-1}'
              FROM ledger_sequence WHERE merchant_id = @m GROUP BY merchant_id;
            """, new { m = m.MerchantId });
        await using var c = new NpgsqlConnection(App.ConnectionString);
        var next = await c.ExecuteScalarAsync<long>("SELECT max(first_seq) FROM ledger_sequence WHERE merchant_id = @m", new { m = m.MerchantId });

        var report = (await m.Client.GetJsonAsync("/v1/ledger/verify")).Body!;

        Assert.False((bool)report["ok"]!);
        var problem = Assert.Single(Problems(report, "sequence_gap_free"));
        Assert.Equal(next, (long)problem["seq"]!);
        Assert.Contains("entry -1", (string)problem["detail"]!);
    }

    [Fact]
    public async Task AnEntryNamedTwiceWithinOneSequenceRowIsReportedAtItsSecondSeq()
    {
        var (m, _) = await ArrangeAsync();
        await App.Services.GetRequiredService<LedgerSequencer>().RunOnceAsync(m.MerchantId, CancellationToken.None);
        // The last row names its first entry once more, on a seq appended after the merchant's last: no gap, no overlap,
        // and every seq names an entry of its transaction, so only the repeat is wrong.
        var last = await LastSequenceRowAsync(m.MerchantId);
        await CorruptAsync("""
            WITH old AS (DELETE FROM ledger_sequence WHERE merchant_id = @m AND first_seq = @first RETURNING *)
            INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids)
            SELECT merchant_id, first_seq, transaction_id, entry_ids || entry_ids[1] FROM old;
            """, new { m = m.MerchantId, first = last.FirstSeq });
        var repeated = last.FirstSeq + last.EntryIds.Length;

        var report = (await m.Client.GetJsonAsync("/v1/ledger/verify")).Body!;

        Assert.False((bool)report["ok"]!);
        var problem = Assert.Single(Problems(report, "sequence_gap_free"));
        Assert.Equal(repeated, (long)problem["seq"]!);
        Assert.Equal(last.TransactionId, (string)problem["transaction_id"]!);
        Assert.Contains($"names entry {last.EntryIds[0]} of transaction {last.TransactionId}, which seq {last.FirstSeq} names already",
            (string)problem["detail"]!);
        Assert.Single(report["problems"]!.AsArray());
    }

    [Fact]
    public async Task ASequenceRowNamingNoEntryAtOneOfItsSeqsIsReportedThere()
    {
        var (m, _) = await ArrangeAsync();
        await App.Services.GetRequiredService<LedgerSequencer>().RunOnceAsync(m.MerchantId, CancellationToken.None);
        // A row from before the database refused NULLs (its check is NOT VALID: older rows are not read when it is
        // added): the last row gets one more seq that names nothing, after the merchant's last, so no gap and no overlap.
        var last = await LastSequenceRowAsync(m.MerchantId);
        await using (var admin = new NpgsqlConnection(App.AdminConnectionString))
        {
            var check = await admin.QuerySingleAsync<string>(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'ledger_sequence_entry_ids_not_null'");
            Assert.EndsWith("NOT VALID", check);
            await admin.ExecuteAsync("ALTER TABLE ledger_sequence DROP CONSTRAINT ledger_sequence_entry_ids_not_null");
            await CorruptAsync("""
                WITH old AS (DELETE FROM ledger_sequence WHERE merchant_id = @m AND first_seq = @first RETURNING *)
                INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids)
                SELECT merchant_id, first_seq, transaction_id, entry_ids || NULL::bigint FROM old;
                """, new { m = m.MerchantId, first = last.FirstSeq });
            await admin.ExecuteAsync($"ALTER TABLE ledger_sequence ADD CONSTRAINT ledger_sequence_entry_ids_not_null {check}");
        }
        var hole = last.FirstSeq + last.EntryIds.Length;

        var report = (await m.Client.GetJsonAsync("/v1/ledger/verify")).Body!;

        Assert.False((bool)report["ok"]!);
        var problem = Assert.Single(Problems(report, "sequence_gap_free"));
        Assert.Equal(hole, (long)problem["seq"]!);
        Assert.Equal(last.TransactionId, (string)problem["transaction_id"]!);
        Assert.Contains($"seq {hole} names no entry", (string)problem["detail"]!);
        Assert.Single(report["problems"]!.AsArray());
    }

    [Fact]
    public async Task VerificationReportsEveryKindOfDamage()
    {
        var (m, customer) = await ArrangeAsync();
        var args = new { m = m.MerchantId, c = customer, t = Ids.New("txn") };
        await App.Services.GetRequiredService<LedgerSequencer>().RunOnceAsync(m.MerchantId, CancellationToken.None);
        await CorruptAsync("""
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, effective_at) VALUES (@m, @t, 'usage', 'ghost', now());
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount) VALUES (@m, @t, 'provider_cost', 'USD', 1);
            INSERT INTO entry_unsequenced (merchant_id, first_entry_id, entry_count, entry_ids, transaction_ids)
            SELECT @m, max(entry_id), 1, ARRAY[max(entry_id)], ARRAY[@t] FROM entries WHERE merchant_id = @m;
            WITH holder AS (DELETE FROM ledger_sequence WHERE merchant_id = @m AND first_seq <= 2 AND first_seq + cardinality(entry_ids) > 2
                            RETURNING *)
            INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids)
            SELECT merchant_id, first_seq + p.position - 1, transaction_id, ARRAY[p.entry_id]
              FROM holder CROSS JOIN LATERAL unnest(holder.entry_ids) WITH ORDINALITY AS p(entry_id, position)
             WHERE first_seq + p.position - 1 <> 2;
            UPDATE requests SET transaction_id = (SELECT transaction_id FROM requests WHERE merchant_id = @m AND request_id = 'a')
             WHERE merchant_id = @m AND request_id = 'b';
            UPDATE requests SET charge_amount = charge_amount + 1 WHERE merchant_id = @m AND request_id = 'c';
            """, args);

        var report = (await m.Client.GetJsonAsync("/v1/ledger/verify")).Body!;

        Assert.False((bool)report["ok"]!);
        Assert.Equal(args.t, (string)Assert.Single(Problems(report, "transactions_balanced"))["transaction_id"]!);
        Assert.Equal(2, (long)Assert.Single(Problems(report, "sequence_gap_free"))["seq"]!);
        Assert.Single(Problems(report, "entries_sequenced"));   // seq 2's entry lost its number
        var unpriced = Problems(report, "requests_priced").Select(p => (string)p["request_id"]!).Order().ToList();
        // b points at a's posting, b's own posting is left without its request, and the ghost posting never had one.
        Assert.Equal(["b", "b", "ghost"], unpriced);
        Assert.Contains(Problems(report, "charges_posted"), p => (string)p["request_id"]! == "c");
        Assert.Empty(Problems(report, "cached_balances"));
    }

    [Fact]
    public async Task VerificationFindsTheEntriesOfAPostingStatementWhoseQueueRowWasLost()
    {
        var (m, _) = await ArrangeAsync();
        var t = Ids.New("txn");
        await using var c = new NpgsqlConnection(App.ConnectionString);
        await c.OpenAsync();
        await using var tx = await c.BeginTransactionAsync();
        await c.ExecuteAsync("""
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, effective_at) VALUES (@m, @t, 'manual', @t, now())
            """, new { m = m.MerchantId, t }, tx);
        var posted = (await c.QueryAsync<long>("""
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount)
            VALUES (@m, @t, 'provider_cost', 'USD', 1), (@m, @t, 'provider_payable', 'USD', -1)
            RETURNING entry_id
            """, new { m = m.MerchantId, t }, tx)).Order().ToList();
        // The statement's queue row, gone before it was ever visible: its entries commit, but nothing will number them.
        var lost = await c.ExecuteAsync("DELETE FROM entry_unsequenced WHERE merchant_id = @m AND entry_ids && @posted",
            new { m = m.MerchantId, posted = posted.ToArray() }, tx);
        await tx.CommitAsync();
        Assert.Equal(1, lost);

        var report = (await m.Client.GetJsonAsync("/v1/ledger/verify")).Body!;

        Assert.False((bool)report["ok"]!);
        var unsequenced = Problems(report, "entries_sequenced");
        Assert.Equal([t, t], unsequenced.Select(p => (string)p["transaction_id"]!));
        Assert.Equal(posted.Select(id => $"entry {id} is neither numbered nor queued for numbering"),
            unsequenced.Select(p => (string)p["detail"]!).Order());
        Assert.All(report["problems"]!.AsArray(), p => Assert.Equal("entries_sequenced", (string)p!["check"]!));
    }

    private static string SolutionRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Lava.sln"))) dir = dir.Parent;
        return dir?.FullName ?? throw new InvalidOperationException("Lava.sln not found above " + AppContext.BaseDirectory);
    }

    private async Task<(int ExitCode, string Stdout)> RunCliAsync(params string[] args)
    {
        var dll = Path.Combine(SolutionRoot(), "Lava.Billing", "bin", "Debug", "net10.0", "Lava.Billing.dll");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(dll);
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment["ConnectionStrings__Billing"] = App.ConnectionString;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await process.WaitForExitAsync(timeout.Token);
        await stderr;
        return (process.ExitCode, await stdout);
    }

    [Fact]
    public async Task TheLedgerVerifyCommandChecksEveryMerchantAndFailsOnAProblem()
    {
        var (m, customer) = await ArrangeAsync();
        var healthy = await App.NewMerchantAsync("Healthy");

        var clean = await RunCliAsync("ledger", "verify");
        Assert.Equal(0, clean.ExitCode);
        var lines = clean.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!).ToList();
        Assert.Equal(new[] { m.MerchantId, healthy.MerchantId }.Order(), lines.Select(l => (string)l["merchant_id"]!).Order());
        Assert.All(lines, l => Assert.True((bool)l["ok"]!));

        await CorruptAsync("UPDATE account_balances SET balance = balance - 1 WHERE merchant_id = @m AND account_id = @a",
            new { m = m.MerchantId, a = LedgerAccounts.CreditsCycle(customer) });
        var broken = await RunCliAsync("ledger", "verify");
        Assert.Equal(1, broken.ExitCode);
        var report = broken.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!)
            .Single(l => (string)l["merchant_id"]! == m.MerchantId);
        Assert.Equal("cached_balances", (string)report["problems"]![0]!["check"]!);
    }
}
