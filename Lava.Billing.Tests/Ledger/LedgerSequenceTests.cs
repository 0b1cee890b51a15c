using System.Globalization;
using System.Net;
using System.Text;
using Dapper;
using Lava.Billing.Infrastructure;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Finance;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Ledger;

/// <summary>Entries are read in ledger sequence order: gap-free, assigned after commit, so a cursor never skips a row.</summary>
public class LedgerSequenceTests(LavaApp app) : ApiTest(app)
{
    /// <summary>Every numbered entry with its seq: the n-th entry of a transaction's row has seq first_seq + n - 1.</summary>
    internal const string NumberedEntries = """
        SELECT r.first_seq + p.position - 1 AS seq, p.entry_id
          FROM ledger_sequence r CROSS JOIN LATERAL unnest(r.entry_ids) WITH ORDINALITY AS p(entry_id, position)
         WHERE r.merchant_id = @m
         ORDER BY seq
        """;

    private Task<List<long>> EntryIdsAsync(string merchantId) =>
        QueryListAsync<long>("SELECT entry_id FROM entries WHERE merchant_id = @m ORDER BY entry_id", merchantId);

    private async Task<List<T>> QueryListAsync<T>(string sql, string merchantId)
    {
        await using var c = new NpgsqlConnection(App.ConnectionString);
        return (await c.QueryAsync<T>(sql, new { m = merchantId })).AsList();
    }

    private static async Task<(List<(long Seq, long EntryId)> Rows, string? Next)> PageAsync(HttpClient client, string query)
    {
        var page = (await client.GetJsonAsync("/v1/ledger/entries?limit=50&" + query)).Body!;
        var rows = page["data"]!.AsArray().Select(e => ((long)e!["seq"]!, (long)e["entry_id"]!)).ToList();
        return (rows, (bool)page["has_more"]! ? (string)page["next_cursor"]! : null);
    }

    /// <summary>A posting written by hand in its own transaction, so the test decides when it commits.</summary>
    private static async Task<NpgsqlTransaction> BeginPostingAsync(NpgsqlConnection c, string merchantId, decimal amount)
    {
        await c.OpenAsync();
        var tx = await c.BeginTransactionAsync();
        var transactionId = Ids.New("txn");
        await c.ExecuteAsync("""
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, effective_at) VALUES (@m, @t, 'manual', @t, now());
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount)
            VALUES (@m, @t, 'provider_cost', 'USD', @amount), (@m, @t, 'provider_payable', 'USD', -@amount);
            """, new { m = merchantId, t = transactionId, amount }, tx);
        return tx;
    }

    [Fact]
    public async Task ACursorAtTheLargestSeqReadsAnEmptyPageFilteredOrNotAndAnEmptyExport()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        await m.ReportAsync("one", null, "gpt", cost: "0.1");
        var last = long.MaxValue;

        Assert.Empty((await PageAsync(m.Client, $"after_seq={last}")).Rows);
        Assert.Empty((await PageAsync(m.Client, $"after_seq={last}&kind=usage")).Rows);
        var csv = await m.Client.GetAsync($"/v1/ledger/entries?format=csv&after_seq={last}");
        Assert.Equal(HttpStatusCode.OK, csv.StatusCode);
        Assert.Single((await csv.Content.ReadAsStringAsync()).Split('\n', StringSplitOptions.RemoveEmptyEntries)); // the header alone
    }

    [Fact]
    public async Task AnEntryThatCommitsLateWithASmallerIdIsNotSkippedByACursorAndARollbackLeavesNoGap()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        await using var slow = new NpgsqlConnection(App.ConnectionString);
        await using var slowTx = await BeginPostingAsync(slow, m.MerchantId, 1.5m);
        await using var doomed = new NpgsqlConnection(App.ConnectionString);
        await using var doomedTx = await BeginPostingAsync(doomed, m.MerchantId, 2.5m);
        await m.ReportAsync("fast", null, "gpt", cost: "0.1");

        var (first, cursor) = await PageAsync(m.Client, "");
        Assert.Null(cursor);
        Assert.Equal([1L, 2L], first.Select(r => r.Seq));

        await doomedTx.RollbackAsync();
        await slowTx.CommitAsync();
        var (next, _) = await PageAsync(m.Client, $"after_seq={first[^1].Seq}");

        // The late commit's entries have smaller entry ids than those already read, yet they come next, numbered 3 and 4.
        Assert.Equal([3L, 4L], next.Select(r => r.Seq));
        Assert.True(next.Max(r => r.EntryId) < first.Min(r => r.EntryId));
        Assert.Equal(await EntryIdsAsync(m.MerchantId), first.Concat(next).Select(r => r.EntryId).Order());
    }

    [Fact]
    public async Task ResumingAnInterruptedExportWhileReportsAreWrittenGivesNoDuplicateAndNoGap()
    {
        var m = await App.NewMerchantAsync();
        var customers = new List<string>();
        for (var i = 0; i < 3; i++) customers.Add(await App.CustomerAsync(m.MerchantId));
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "tokens_1m", (0, 5));
        var writers = Enumerable.Range(0, 4).Select(w => Task.Run(async () =>
        {
            var client = App.ClientWithKey(m.SecretKey);
            for (var i = 0; i < 40; i++)
            {
                var r = await client.PostJsonAsync("/v1/requests", new
                {
                    request_id = $"w{w}-{i}", customer_id = i % 4 == 0 ? null : customers[i % 3], meter_slug = "gpt",
                    input_tokens = 1_000 + i, cost = "0.01",
                });
                Assert.Equal(HttpStatusCode.Created, r.Status);
            }
        })).ToList();

        var reader = App.ClientWithKey(await m.ReadOnlyKeyAsync());
        var seen = new List<(long Seq, long EntryId)>();
        var resumes = 0;
        while (true)
        {
            var writing = writers.Any(w => !w.IsCompleted);
            // An export read for a few rows, then dropped as if the connection broke, then resumed after its last seq.
            using (var response = await reader.SendAsync(new HttpRequestMessage(HttpMethod.Get,
                       $"/v1/ledger/entries?format=csv&after_seq={(seen.Count == 0 ? 0 : seen[^1].Seq)}"), HttpCompletionOption.ResponseHeadersRead))
            {
                using var lines = new StreamReader(await response.Content.ReadAsStreamAsync(), Encoding.UTF8);
                await lines.ReadLineAsync();
                for (var i = 0; i < 7 && await lines.ReadLineAsync() is { } line; i++)
                {
                    var fields = line.Split(',');
                    seen.Add((long.Parse(fields[0], CultureInfo.InvariantCulture), long.Parse(fields[1], CultureInfo.InvariantCulture)));
                }
            }
            resumes++;
            // And the JSON pages, by cursor, in between.
            var (rows, _) = await PageAsync(reader, $"after_seq={(seen.Count == 0 ? 0 : seen[^1].Seq)}");
            seen.AddRange(rows.Take(13));
            if (!writing && rows.Count == 0) break;
        }
        await Task.WhenAll(writers);

        Assert.True(resumes > 3);
        Assert.Equal(Enumerable.Range(1, seen.Count).Select(i => (long)i), seen.Select(r => r.Seq));
        Assert.Equal(await EntryIdsAsync(m.MerchantId), seen.Select(r => r.EntryId).Order());
    }

    [Fact]
    public async Task OneMerchantWhoseNumberingFailsDoesNotStopTheOthers()
    {
        var a = await App.NewMerchantAsync();
        var b = await App.NewMerchantAsync();
        // Numbering A's entries fails, a fault of A's own. In place before anything is posted, so the background sequencer
        // cannot number A's first.
        await using var fault = await App.InjectFaultAsync("fail_numbering_" + a.MerchantId.ToLowerInvariant(), "ledger_sequence", "INSERT",
            $"NEW.merchant_id = '{a.MerchantId}'", once: false);
        foreach (var m in new[] { a, b })
        {
            await using var c = new NpgsqlConnection(App.ConnectionString);
            await using var tx = await BeginPostingAsync(c, m.MerchantId, 1m);
            await tx.CommitAsync();
        }
        // The run over every merchant numbers B whatever A's failure, and does not fail itself; A's own reader gets the error.
        await App.Services.GetRequiredService<LedgerSequencer>().RunOnceAsync(null, CancellationToken.None);
        Assert.Equal(2, (await QueryListAsync<(long Seq, long EntryId)>(NumberedEntries, b.MerchantId)).Count);
        Assert.Empty(await QueryListAsync<(long Seq, long EntryId)>(NumberedEntries, a.MerchantId));
        await Assert.ThrowsAsync<PostgresException>(() =>
            App.Services.GetRequiredService<LedgerSequencer>().RunOnceAsync(a.MerchantId, CancellationToken.None));
    }

    [Fact]
    public async Task ConcurrentSequencerRunsNumberEveryEntryOnceWithoutAGap()
    {
        var m = await App.NewMerchantAsync();
        await using (var admin = new NpgsqlConnection(App.AdminConnectionString))
        {
            await admin.ExecuteAsync("""
                INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, effective_at)
                SELECT @m, 'txn_' || g, 'seed', 'seed_' || g, now() FROM generate_series(1, 12000) g;
                INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount)
                SELECT @m, 'txn_' || g, a.account_id, 'USD', a.sign FROM generate_series(1, 12000) g,
                       (VALUES ('provider_cost', 1), ('provider_payable', -1)) a(account_id, sign);
                """, new { m = m.MerchantId }, commandTimeout: 120);
        }
        var sequencer = App.Services.GetRequiredService<LedgerSequencer>();

        await Task.WhenAll(Enumerable.Range(0, 5).Select(i => Task.Run(() => sequencer.RunOnceAsync(i == 0 ? null : m.MerchantId, CancellationToken.None))));

        var numbered = await QueryListAsync<(long Seq, long EntryId)>(NumberedEntries, m.MerchantId);
        Assert.Equal(Enumerable.Range(1, 24_000).Select(i => (long)i), numbered.Select(n => n.Seq));
        Assert.Equal(await EntryIdsAsync(m.MerchantId), numbered.Select(n => n.EntryId).Order());
        Assert.Equal(0L, await App.QueryAsync<long>("SELECT count(*) FROM entry_unsequenced WHERE merchant_id = @m", new { m = m.MerchantId }));
    }

    [Fact]
    public async Task PostingStatementsRacingSequencerRunsGetEveryCommittedEntryNumberedOnceAndNothingRolledBack()
    {
        var m = await App.NewMerchantAsync();
        var sequencer = App.Services.GetRequiredService<LedgerSequencer>();
        var rolledBack = new System.Collections.Concurrent.ConcurrentBag<long>();
        var committed = new System.Collections.Concurrent.ConcurrentBag<long>();

        // 12 writers, 8 postings each: a statement of 1 to 40 balanced transactions, every third one rolled back, each
        // held open a moment so commits interleave with the sequencer runs and land out of entry_id order.
        var writers = Enumerable.Range(0, 12).Select(w => Task.Run(async () =>
        {
            await using var c = new NpgsqlConnection(App.ConnectionString);
            await c.OpenAsync();
            for (var i = 0; i < 8; i++)
            {
                var transactions = Enumerable.Range(0, 1 + (w * 7 + i * 13) % 40).Select(_ => Ids.New("txn")).ToArray();
                await using var tx = await c.BeginTransactionAsync();
                await c.ExecuteAsync("""
                    INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, effective_at)
                    SELECT @m, t, 'manual', t, now() FROM unnest(@transactions) t
                    """, new { m = m.MerchantId, transactions }, tx);
                var ids = (await c.QueryAsync<long>("""
                    INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount)
                    SELECT @m, t, a.account_id, 'USD', a.sign FROM unnest(@transactions) t,
                           (VALUES ('provider_cost', 1), ('provider_payable', -1)) a(account_id, sign)
                    RETURNING entry_id
                    """, new { m = m.MerchantId, transactions }, tx)).AsList();
                await Task.Delay((w + i) % 4 * 5);
                if ((w + i) % 3 == 0)
                {
                    await tx.RollbackAsync();
                    foreach (var id in ids) rolledBack.Add(id);
                }
                else
                {
                    await tx.CommitAsync();
                    foreach (var id in ids) committed.Add(id);
                }
            }
        })).ToList();
        var sequencers = Enumerable.Range(0, 4).Select(s => Task.Run(async () =>
        {
            while (writers.Any(w => !w.IsCompleted)) await sequencer.RunOnceAsync(s == 0 ? null : m.MerchantId, CancellationToken.None);
        })).ToList();
        await Task.WhenAll(writers.Concat(sequencers));
        await sequencer.RunOnceAsync(m.MerchantId, CancellationToken.None);

        var numbered = await QueryListAsync<(long Seq, long EntryId)>(NumberedEntries, m.MerchantId);
        Assert.NotEmpty(rolledBack);
        Assert.Equal(Enumerable.Range(1, committed.Count).Select(i => (long)i), numbered.Select(n => n.Seq));
        Assert.Equal(committed.Order(), numbered.Select(n => n.EntryId).Order());
        Assert.Equal(committed.Order(), await EntryIdsAsync(m.MerchantId));
        Assert.Equal(0L, await App.QueryAsync<long>("SELECT count(*) FROM entry_unsequenced WHERE merchant_id = @m", new { m = m.MerchantId }));
    }

    [Fact]
    public async Task TransactionsWhoseEntryIdsInterleaveGetConsecutiveSeqsInEntryIdOrderAndOneRowEach()
    {
        var m = await App.NewMerchantAsync();
        var (a, b) = (Ids.New("txn"), Ids.New("txn"));
        await using var first = new NpgsqlConnection(App.ConnectionString);
        await using var second = new NpgsqlConnection(App.ConnectionString);
        await first.OpenAsync();
        await second.OpenAsync();
        // Two posting statements of one merchant in flight at once whose entry ids interleave (a, b, a, b), as two
        // concurrent statements drawing from the identity do; the ids are drawn here so the interleaving is certain.
        var drawn = (await first.QueryAsync<long>(
            "SELECT nextval(pg_get_serial_sequence('entries', 'entry_id')) FROM generate_series(1, 4) ORDER BY 1")).ToList();
        var ids = new List<(string Transaction, long EntryId)> { (a, drawn[0]), (b, drawn[1]), (a, drawn[2]), (b, drawn[3]) };
        await using var firstTx = await first.BeginTransactionAsync();
        await using var secondTx = await second.BeginTransactionAsync();
        const string Post = """
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, effective_at) VALUES (@m, @t, 'manual', @t, now());
            INSERT INTO entries (merchant_id, entry_id, transaction_id, account_id, currency, amount) OVERRIDING SYSTEM VALUE
            VALUES (@m, @debit, @t, 'provider_cost', 'USD', 1), (@m, @credit, @t, 'provider_payable', 'USD', -1);
            """;
        await first.ExecuteAsync(Post, new { m = m.MerchantId, t = a, debit = drawn[0], credit = drawn[2] }, firstTx);
        await second.ExecuteAsync(Post, new { m = m.MerchantId, t = b, debit = drawn[1], credit = drawn[3] }, secondTx);
        await secondTx.CommitAsync();
        await firstTx.CommitAsync();

        await App.Services.GetRequiredService<LedgerSequencer>().RunOnceAsync(m.MerchantId, CancellationToken.None);

        // a took the smallest id, so it comes first: its two entries are seq 1 and 2, then b's are 3 and 4.
        var expected = ids.Where(i => i.Transaction == a).Concat(ids.Where(i => i.Transaction == b))
            .Select((i, n) => (Seq: (long)n + 1, i.EntryId)).ToList();
        Assert.Equal(expected, await QueryListAsync<(long, long)>(NumberedEntries, m.MerchantId));
        Assert.Equal([(1L, a), (3L, b)], await QueryListAsync<(long, string)>(
            "SELECT first_seq, transaction_id FROM ledger_sequence WHERE merchant_id = @m ORDER BY first_seq", m.MerchantId));
        // Every reader answers the same seqs: the page, the export, the transaction.
        var (page, _) = await PageAsync(m.Client, "");
        Assert.Equal(expected, page);
        var csv = (await m.Client.GetStringAsync("/v1/ledger/entries?format=csv")).Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1)
            .Select(l => l.Split(',')).Select(f => (long.Parse(f[0], CultureInfo.InvariantCulture), long.Parse(f[1], CultureInfo.InvariantCulture)));
        Assert.Equal(expected, csv);
        var second3 = await PageAsync(m.Client, "after_seq=2");
        Assert.Equal(expected.Skip(2), second3.Rows);
        var transaction = (await m.Client.GetJsonAsync($"/v1/ledger/transactions/{b}")).Body!;
        Assert.Equal(expected.Skip(2), transaction["entries"]!.AsArray().Select(e => ((long)e!["seq"]!, (long)e["entry_id"]!)));
    }

    [Fact]
    public async Task TheBackgroundSequencerNumbersEntriesThatNobodyReads()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        await m.ReportAsync("unread", null, "gpt", cost: "0.2");

        // Bounded wait for the loop (Ledger:SequencerIntervalMs, 1 s by default); no API call runs the sequencer here.
        var numbered = 0L;
        for (var attempt = 0; attempt < 200 && numbered < 2; attempt++)
        {
            await Task.Delay(50);
            numbered = await App.QueryAsync<long>("SELECT coalesce(sum(cardinality(entry_ids)), 0) FROM ledger_sequence WHERE merchant_id = @m",
                new { m = m.MerchantId });
        }
        Assert.Equal(2L, numbered);
    }

    [Fact]
    public async Task SequenceNumbersCannotBeRewritten()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        await m.ReportAsync("r", null, "gpt", cost: "0.2");
        await App.Services.GetRequiredService<LedgerSequencer>().RunOnceAsync(m.MerchantId, CancellationToken.None);
        await using var c = new NpgsqlConnection(App.ConnectionString);
        var e = await Assert.ThrowsAsync<PostgresException>(() => c.ExecuteAsync("UPDATE ledger_sequence SET first_seq = first_seq + 10"));
        Assert.Contains("append-only", e.MessageText);
        await Assert.ThrowsAsync<PostgresException>(() => c.ExecuteAsync("DELETE FROM ledger_sequence"));
        await Assert.ThrowsAsync<PostgresException>(() => c.ExecuteAsync("TRUNCATE ledger_sequence"));
    }
}
