using System.Globalization;
using System.Net;
using System.Text.Json;
using Lava.Billing.Ledger;
using Lava.Billing.Requests;
using Lava.Billing.Requests.Posting;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Lava.Billing.Tests.Requests;

/// <summary>Many reports in one database transaction post exactly what one-by-one posting would.</summary>
public class BatchPostingTests(LavaApp app) : ApiTest(app)
{
    private ReportPoster Reporter => App.Services.GetRequiredService<ReportPoster>();

    private static CreateRequestBody Body(string id, string? customer, string meter, long tokens = 0, string? cost = null) =>
        ReportBodies.Of(id, customer, meter, tokens, cost);

    [Fact]
    public async Task ARandomWorkloadPostsTheSameLedgerInOneBatchAsOneByOne()
    {
        var random = new Random(7);
        var byBatch = await App.NewMerchantAsync("batch");
        var oneByOne = await App.NewMerchantAsync("single");
        var customers = new Dictionary<string, List<string>>();
        foreach (var m in new[] { byBatch, oneByOne })
        {
            customers[m.MerchantId] = [];
            for (var i = 0; i < 4; i++) customers[m.MerchantId].Add(await App.CustomerAsync(m.MerchantId));
            await App.MeterAsync(m.MerchantId, "grad", "fixed", "tokens_1m", (0, 7), (20_000, 3.3333333333m), (60_000, 1));
            await App.MeterAsync(m.MerchantId, "pct", "percentage", "requests", (0, 12.5m));
            await App.GrantAsync(m.MerchantId, customers[m.MerchantId][0], 0.25m);
            await App.GrantAsync(m.MerchantId, customers[m.MerchantId][1], 0.1m, "bundle");
        }
        var script = Enumerable.Range(0, 200).Select(i => (
            Id: $"r{random.Next(180)}", Customer: random.Next(5), Meter: random.Next(3) == 0 ? "pct" : "grad",
            Tokens: (long)random.Next(0, 9_000), Cost: (random.Next(0, 100_000) / 100_000m).ToString(CultureInfo.InvariantCulture))).ToList();
        ReportItem Item(LavaApp.Merchant m, (string Id, int Customer, string Meter, long Tokens, string Cost) s) =>
            new(m.MerchantId, Body(s.Id, s.Customer == 4 ? null : customers[m.MerchantId][s.Customer], s.Meter, s.Tokens, s.Cost));

        var batched = await Reporter.PostAsync(script.Select(s => Item(byBatch, s)).ToList(), CancellationToken.None);
        var single = new List<ReportOutcome>();
        foreach (var s in script) single.Add(await Reporter.PostAsync(Item(oneByOne, s), CancellationToken.None));

        static string Shape(ReportOutcome o) => o switch
        {
            ReportOutcome.Created c => "created " + Charge(c.Response),
            ReportOutcome.Replayed r => "replayed " + Charge(r.Response),
            ReportOutcome.Refused f => "refused " + f.Refusal.GetType().Name,
            _ => "?",
        };
        static string Charge(string json)
        {
            var doc = JsonDocument.Parse(json).RootElement;
            return doc.GetProperty("charge").GetProperty("amount").GetString() + " " + doc.GetProperty("customer_balance");
        }
        Assert.Equal(single.Select(Shape), batched.Select(Shape));
        // The batch really was one database transaction (not the one-by-one fallback).
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(DISTINCT xmin::text) FROM requests WHERE merchant_id = @m", new { m = byBatch.MerchantId }));
        for (var c = 0; c < 4; c++)
        {
            foreach (var account in new Func<string, string>[] { LedgerAccounts.CreditsCycle, LedgerAccounts.CreditsBundle, LedgerAccounts.Receivable })
            {
                Assert.Equal(await App.BalanceAsync(oneByOne.MerchantId, account(customers[oneByOne.MerchantId][c])),
                    await App.BalanceAsync(byBatch.MerchantId, account(customers[byBatch.MerchantId][c])));
            }
        }
        Assert.Equal(await App.EntriesSumAsync(oneByOne.MerchantId, LedgerAccounts.UsageRevenue), await App.EntriesSumAsync(byBatch.MerchantId, LedgerAccounts.UsageRevenue));
        Assert.Equal(await App.EntriesSumAsync(oneByOne.MerchantId, LedgerAccounts.ProviderCost), await App.EntriesSumAsync(byBatch.MerchantId, LedgerAccounts.ProviderCost));
    }

    [Fact]
    public async Task OneItemTheDatabaseRefusesDoesNotFailItsNeighbours()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        // Not printable ASCII: the validator would refuse it; here it reaches the database CHECK, which fails the batch.
        var items = new[] { "a", "b\u00e9", "c" }.Select(id => new ReportItem(m.MerchantId, Body(id, customer, "gpt"))).ToList();

        var outcomes = await Reporter.PostAsync(items, CancellationToken.None);

        Assert.IsType<ReportOutcome.Created>(outcomes[0]);
        Assert.IsType<ReportRefusal.Failed>(Assert.IsType<ReportOutcome.Refused>(outcomes[1]).Refusal);
        Assert.IsType<ReportOutcome.Created>(outcomes[2]);
        Assert.Equal(2m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(customer)));
    }

    [Fact]
    public async Task TheSameRequestIdTwiceInABatchIsPostedOnce()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        var outcomes = await Reporter.PostAsync([
            new(m.MerchantId, Body("x", customer, "gpt")), new(m.MerchantId, Body("x", customer, "gpt")),
            new(m.MerchantId, Body("x", customer, "gpt", tokens: 5)),
        ], CancellationToken.None);

        var created = Assert.IsType<ReportOutcome.Created>(outcomes[0]);
        Assert.Equal(created.Response, Assert.IsType<ReportOutcome.Replayed>(outcomes[1]).Response);
        Assert.IsType<ReportRefusal.IdempotencyConflict>(Assert.IsType<ReportOutcome.Refused>(outcomes[2]).Refusal);
        Assert.Equal(1m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(customer)));
    }

    [Fact]
    public async Task ConcurrentReportsOfOneCustomerCrossTiersExactlyWhateverTheBatching()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "grad", "fixed", "requests", (0, 5), (50, 1));
        var clients = Enumerable.Range(0, 16).Select(_ => App.ClientWithKey(m.SecretKey)).ToList();

        var results = await Task.WhenAll(Enumerable.Range(0, 100).Select(i =>
            clients[i % clients.Count].PostJsonAsync("/v1/requests", new { request_id = $"r{i}", customer_id = customer, meter_slug = "grad" })));

        Assert.All(results, r => Assert.Equal(HttpStatusCode.Created, r.Status));
        Assert.Equal(50, results.Count(r => (string)r.Body!["charge"]!["amount"]! == "5.0000000000"));
        Assert.Equal(50, results.Count(r => (string)r.Body!["charge"]!["amount"]! == "1.0000000000"));
        Assert.Equal(300m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(customer)));
    }
}
