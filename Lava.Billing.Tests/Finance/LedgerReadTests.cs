using System.Net;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Finance;

public class LedgerReadTests(LavaApp app) : ApiTest(app)
{
    [Fact]
    public async Task AccountsShowTheirBalancesNowAndAsOfAnEarlierInstant()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 3));
        await App.GrantAsync(m.MerchantId, customer, 5m);
        var between = await App.DatabaseNowAsync();
        await m.ReportAsync("r1", customer, "gpt", cost: "0.25");
        await m.ReportAsync("r2", customer, "gpt");

        var now = (await m.Client.GetJsonAsync("/v1/ledger/accounts?limit=100")).Body!["data"]!.AsArray()
            .ToDictionary(a => (string)a!["account_id"]!, a => a!["balance"].Dec());
        Assert.Equal(await App.BalanceAsync(m.MerchantId, LedgerAccounts.CreditsCycle(customer)), now[LedgerAccounts.CreditsCycle(customer)]);
        Assert.Equal(0m, now[LedgerAccounts.CreditsCycle(customer)]);
        Assert.Equal(1m, now[LedgerAccounts.Receivable(customer)]);
        Assert.Equal(-6m, now[LedgerAccounts.UsageRevenue]);
        Assert.Equal(0.25m, now[LedgerAccounts.ProviderCost]);
        Assert.Equal(-0.25m, now[LedgerAccounts.ProviderPayable]);
        Assert.Equal(5m, now[LedgerAccounts.PaymentsClearing]);
        Assert.Equal(10, now.Count); // 3 of the customer, 7 merchant-wide (docs/ledger.md)

        var before = (await m.Client.GetJsonAsync($"/v1/ledger/accounts?limit=100&as_of={between}")).Body!["data"]!.AsArray()
            .ToDictionary(a => (string)a!["account_id"]!, a => a!["balance"].Dec());
        Assert.Equal(-5m, before[LedgerAccounts.CreditsCycle(customer)]);
        Assert.Equal(0m, before[LedgerAccounts.Receivable(customer)]);
        Assert.Equal(0m, before[LedgerAccounts.UsageRevenue]);

        var mine = (await m.Client.GetJsonAsync($"/v1/ledger/accounts?customer_id={customer}&kind=receivable")).Body!["data"]!.AsArray();
        Assert.Equal([LedgerAccounts.Receivable(customer)], mine.Select(a => (string)a!["account_id"]!));
        Assert.Equal("asset", (string)mine[0]!["type"]!);
    }

    [Fact]
    public async Task ATransactionShowsItsEntriesAndPricingLineage()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        var meterId = await App.MeterAsync(m.MerchantId, "gpt", "fixed", "tokens_1m", (0, 5), (1_000, 3));
        var transactionId = await m.ReportAsync("job-1", customer, "gpt", inputTokens: 1_500, cost: "0.001");

        var r = await m.Client.GetJsonAsync($"/v1/ledger/transactions/{transactionId}");

        Assert.Equal(HttpStatusCode.OK, r.Status);
        var t = r.Body!;
        Assert.Equal("usage", (string)t["kind"]!);
        Assert.Equal("job-1", (string)t["reference"]!);
        Assert.Equal(meterId, (string)t["meter_id"]!);
        Assert.Equal(1, (int)t["price_version"]!);
        var entries = t["entries"]!.AsArray();
        Assert.Equal(0m, entries.Sum(e => e!["amount"].Dec()));
        Assert.All(entries, e => Assert.True((long?)e!["seq"] > 0));
        Assert.Contains(entries, e => (string)e!["account_id"]! == LedgerAccounts.UsageRevenue && e["amount"].Dec() == -0.0065m);
        var lineage = t["lineage"]!;
        Assert.Equal("job-1", (string)lineage["request_id"]!);
        Assert.Equal(meterId, (string)lineage["meter_id"]!);
        Assert.Equal(1, (int)lineage["price_version"]!);
        Assert.Equal(1_500, (long)lineage["quantities"]!["total_tokens"]!);
        Assert.Equal(["0.0050000000", "0.0015000000"], lineage["charge"]!["breakdown"]!.AsArray().Select(l => (string)l!["cost"]!));

        (await m.Client.GetJsonAsync("/v1/ledger/transactions/txn_missing")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        var other = await App.NewMerchantAsync("Other");
        (await other.Client.GetJsonAsync($"/v1/ledger/transactions/{transactionId}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task EntriesPageInLedgerSequenceOrderWithFilters()
    {
        var m = await App.NewMerchantAsync();
        var alice = await App.CustomerAsync(m.MerchantId);
        var bob = await App.CustomerAsync(m.MerchantId);
        var gpt = await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        await App.MeterAsync(m.MerchantId, "img", "fixed", "requests", (0, 2));
        await App.GrantAsync(m.MerchantId, alice, 10m);
        await m.ReportAsync("a1", alice, "gpt", cost: "0.5");
        await m.ReportAsync("b1", bob, "img");
        await m.ReportAsync("m1", null, "gpt", cost: "0.1");
        var total = await App.QueryAsync<long>("SELECT count(*) FROM entries WHERE merchant_id = @m", new { m = m.MerchantId });

        var seqs = new List<long>();
        string? cursor = null;
        do
        {
            var page = (await m.Client.GetJsonAsync("/v1/ledger/entries?limit=3" + (cursor is null ? "" : $"&cursor={cursor}"))).Body!;
            seqs.AddRange(page["data"]!.AsArray().Select(e => (long)e!["seq"]!));
            cursor = (bool)page["has_more"]! ? (string)page["next_cursor"]! : null;
        } while (cursor is not null);
        Assert.Equal(Enumerable.Range(1, (int)total).Select(i => (long)i), seqs);

        async Task<List<string>> Accounts(string query) =>
            (await m.Client.GetJsonAsync("/v1/ledger/entries?limit=100&" + query)).Body!["data"]!.AsArray()
            .Select(e => (string)e!["account_id"]!).ToList();
        Assert.Equal([LedgerAccounts.UsageRevenue, LedgerAccounts.UsageRevenue], await Accounts($"account={LedgerAccounts.UsageRevenue}"));
        Assert.Equal(6, (await Accounts($"customer_id={alice}")).Count);   // the grant's two, a1's credits, revenue, cost, payable
        Assert.Equal(6, (await Accounts($"meter_id={gpt}")).Count);        // a1: credits, revenue, cost, payable; m1: cost, payable
        Assert.Equal(2, (await Accounts("kind=test_grant")).Count);
        Assert.Equal((int)total - 2, (await Accounts("after_seq=2")).Count);
        var first = (await m.Client.GetJsonAsync("/v1/ledger/entries?limit=1")).Body!["data"]![0]!;
        Assert.Equal(["seq", "entry_id", "created_at", "effective_at", "transaction_id", "transaction_kind", "reference", "customer_id",
            "meter_id", "price_version", "account_id", "account_kind", "account_type", "currency", "amount", "debit", "credit"],
            first.AsObject().Select(p => p.Key));
    }

    [Theory]
    [InlineData("after_seq=-1", "after_seq")]
    [InlineData("after_seq=x", "after_seq")]
    [InlineData("after_seq=1&cursor=MQ", "after_seq")]
    [InlineData("cursor=eA", "cursor")]
    [InlineData("from=soon", "from")]
    [InlineData("to=2026-02-30", "to")]
    [InlineData("format=xml", "format")]
    [InlineData("limit=101", "limit")]
    public async Task BadEntryQueriesAreA400NamingTheField(string query, string field)
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.GetJsonAsync("/v1/ledger/entries?" + query)).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.NotNull(body["errors"]![field]);
    }

    [Fact]
    public async Task TheTrialBalanceSumsToZeroAfterAMixedConcurrentWorkload()
    {
        var m = await App.NewMerchantAsync();
        var customers = new List<string>();
        for (var i = 0; i < 4; i++) customers.Add(await App.CustomerAsync(m.MerchantId));
        await App.MeterAsync(m.MerchantId, "grad", "fixed", "tokens_1m", (0, 5), (1_000, 3.3333333333m), (50_000, 0.0000001m));
        await App.MeterAsync(m.MerchantId, "pct", "percentage", "requests", (0, 17.5m));
        await App.GrantAsync(m.MerchantId, customers[0], 0.37m);
        await App.GrantAsync(m.MerchantId, customers[1], 1m, "bundle");
        var random = new Random(20260301);
        var reports = Enumerable.Range(0, 80).Select(i => new
        {
            request_id = $"r{i % 70}",
            customer_id = random.Next(5) == 0 ? null : customers[random.Next(customers.Count)],
            meter_slug = random.Next(2) == 0 ? "grad" : "pct",
            input_tokens = random.Next(0, 30_000),
            cost = (random.Next(0, 1_000_000) / 1_000_000m).ToString(System.Globalization.CultureInfo.InvariantCulture),
        }).ToList();
        var clients = Enumerable.Range(0, 6).Select(_ => App.ClientWithKey(m.SecretKey)).ToList();
        await Parallel.ForEachAsync(reports.Select((r, i) => (r, i)), new ParallelOptions { MaxDegreeOfParallelism = 6 },
            async (x, _) => await clients[x.i % 6].PostJsonAsync("/v1/requests", x.r));

        var tb = (await m.Client.GetJsonAsync("/v1/ledger/trial-balance")).Body!;
        var total = tb["totals"]!.AsArray().Single()!;
        Assert.Equal("USD", (string)total["currency"]!);
        Assert.Equal(total["debits"].Dec(), total["credits"].Dec());
        Assert.Equal(0m, total["balance"].Dec());
        Assert.True(total["debits"].Dec() > 0);
        var lines = tb["lines"]!.AsArray();
        Assert.Equal(total["debits"].Dec(), lines.Sum(l => l!["debits"].Dec()));
        var accounts = (await m.Client.GetJsonAsync("/v1/ledger/accounts?limit=100")).Body!["data"]!.AsArray()
            .ToDictionary(a => (string)a!["account_id"]!, a => a!["balance"].Dec());
        Assert.All(lines, l => Assert.Equal(accounts[(string)l!["account_id"]!], l["balance"].Dec()));
        Assert.All(lines, l => Assert.Equal(l!["debits"].Dec() - l["credits"].Dec(), l["balance"].Dec()));

        var byKind = (await m.Client.GetJsonAsync("/v1/ledger/trial-balance?group_by=kind")).Body!;
        Assert.Equal(total.ToJsonString(), byKind["totals"]![0]!.ToJsonString());
        var receivables = byKind["lines"]!.AsArray().Single(l => (string)l!["kind"]! == "receivable")!;
        Assert.Null(receivables["account_id"]);
        Assert.Equal(lines.Where(l => ((string)l!["account_id"]!).EndsWith(":receivable", StringComparison.Ordinal)).Sum(l => l!["balance"].Dec()),
            receivables["balance"].Dec());

        var empty = (await m.Client.GetJsonAsync("/v1/ledger/trial-balance?as_of=2000-01-01T00:00:00Z")).Body!;
        Assert.Empty(empty["lines"]!.AsArray());
        Assert.Empty(empty["totals"]!.AsArray());
        (await m.Client.GetJsonAsync("/v1/ledger/trial-balance?group_by=month")).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
    }

    [Fact]
    public async Task AStatementShowsTheOpeningBalanceEveryMovementAndTheClosingBalance()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        var other = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 2));
        await App.GrantAsync(m.MerchantId, customer, 3m);
        await m.ReportAsync("before", customer, "gpt");
        var from = await App.DatabaseNowAsync();
        await m.ReportAsync("in1", customer, "gpt");
        await m.ReportAsync("theirs", other, "gpt");
        await m.ReportAsync("in2", customer, "gpt");
        var to = await App.DatabaseNowAsync();
        await m.ReportAsync("after", customer, "gpt");

        var r = await m.Client.GetJsonAsync($"/v1/customers/{customer}/statement?from={from}&to={to}");

        Assert.Equal(HttpStatusCode.OK, r.Status);
        var s = r.Body!;
        Assert.Equal(customer, (string)s["customer_id"]!);
        Assert.Equal("1.0000000000", (string)s["opening"]!["credits_remaining"]!);
        Assert.Equal("0.0000000000", (string)s["opening"]!["receivable"]!);
        Assert.Equal("0.0000000000", (string)s["closing"]!["credits_remaining"]!);
        Assert.Equal("3.0000000000", (string)s["closing"]!["receivable"]!);
        var movements = s["movements"]!.AsArray();
        Assert.Equal(["in1", "in1", "in2"], movements.Select(x => (string)x!["reference"]!));
        Assert.Equal(["1.0000000000", "1.0000000000", "2.0000000000"], movements.Select(x => (string)x!["amount"]!));
        Assert.Equal(["0.0000000000", "1.0000000000", "3.0000000000"], movements.Select(x => (string)x!["balance_after"]!));
        var cycle = s["accounts"]!.AsArray().Single(a => (string)a!["kind"]! == "credits_cycle")!;
        Assert.Equal(-1m, cycle["opening_balance"].Dec());
        Assert.Equal(1m, cycle["debits"].Dec());
        Assert.Equal(0m, cycle["closing_balance"].Dec());
        Assert.Equal(3, s["accounts"]!.AsArray().Count);

        // Without bounds: from the first entry to everything posted so far, ending at the cached balances.
        var all = (await m.Client.GetJsonAsync($"/v1/customers/{customer}/statement")).Body!;
        Assert.Equal("0.0000000000", (string)all["opening"]!["credits_remaining"]!);
        Assert.Equal(await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(customer)), all["closing"]!["receivable"].Dec());
        Assert.Equal(6, all["movements"]!.AsArray().Count);

        (await m.Client.GetJsonAsync("/v1/customers/cus_missing/statement")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        var stranger = await App.NewMerchantAsync("Other");
        (await stranger.Client.GetJsonAsync($"/v1/customers/{customer}/statement")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.GetJsonAsync($"/v1/customers/{customer}/statement?from={to}&to={from}")).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
    }
}
