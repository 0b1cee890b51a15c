using System.Net;
using System.Text.Json;
using Dapper;
using Lava.Billing.Infrastructure;
using Lava.Billing.Ledger;
using Lava.Billing.Requests;
using Lava.Billing.Requests.Posting;
using Lava.Billing.Tests.Infrastructure;
using Lava.Billing.Tests.Subscriptions;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Ledger;

/// <summary>The database bounds every amount and balance; the request that would cross one gets 422 and posts nothing.</summary>
public class AmountBoundsTests(LavaApp app) : ApiTest(app)
{
    private const decimal LargestPack = 999_999_999_999_999.9999999999m;

    private static CreateRequestBody Body(string id, string customer, string meter) =>
        JsonSerializer.Deserialize<CreateRequestBody>(JsonSerializer.Serialize(new { request_id = id, customer_id = customer, meter_slug = meter }),
            Lava.Billing.Infrastructure.Http.LavaJson.Options)!;

    [Fact]
    public async Task BuyingTheLargestBundleOverAndOverIsRefusedWhereTheBalanceWouldCrossItsBound()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        var plan = await App.PlanAsync(m.MerchantId, 0m, 0m, bundles: (LargestPack, LargestPack));
        Assert.Equal(HttpStatusCode.Created, (await m.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = customer, plan_id = plan.PlanId })).Status);
        var other = await App.NewMerchantAsync();
        var otherCustomer = await App.CustomerAsync(other.MerchantId);
        await App.MeterAsync(other.MerchantId, "gpt", "fixed", "requests", (0, 1));

        // Another merchant reports all along; none of its reports may notice.
        using var stop = new CancellationTokenSource();
        var otherReports = Task.Run(async () =>
        {
            var statuses = new List<HttpStatusCode>();
            for (var i = 0; !stop.IsCancellationRequested; i++)
                statuses.Add((await other.Client.PostJsonAsync("/v1/requests", new { request_id = $"o{i}", customer_id = otherCustomer, meter_slug = "gpt" })).Status);
            return statuses;
        });
        var bought = 0;
        (HttpStatusCode Status, System.Text.Json.Nodes.JsonNode? Body, HttpResponseMessage Response) refused;
        while (true)
        {
            var r = await m.Client.SendAsync(HttpMethod.Post, $"/v1/credit_bundles/{plan.BundleIds[0]}/purchases",
                new HttpRequestMessageContent(new { customer_id = customer }, $"buy-{bought}"));
            if (r.Status != HttpStatusCode.Created)
            {
                refused = r;
                break;
            }
            bought++;
        }
        await stop.CancelAsync();
        var otherStatuses = await otherReports;

        refused.AssertProblem(HttpStatusCode.UnprocessableEntity, "amount_out_of_range");
        // 1,000 packs stay within the 1e18 balance bound; the 1,001st would not.
        Assert.Equal(1_000, bought);
        Assert.Equal(-1_000 * LargestPack, await App.BalanceAsync(m.MerchantId, LedgerAccounts.CreditsBundle(customer)));
        Assert.Equal(1_000, await App.QueryAsync<int>("SELECT count(*)::int FROM bundle_purchases WHERE merchant_id = @m", new { m = m.MerchantId }));
        var balance = await m.Client.GetJsonAsync($"/v1/customers/{customer}/balance");
        Assert.Equal(HttpStatusCode.OK, balance.Status);
        Assert.NotEmpty(otherStatuses);
        Assert.All(otherStatuses, s => Assert.Equal(HttpStatusCode.Created, s));
        Assert.Equal(otherStatuses.Count, await App.BalanceAsync(other.MerchantId, LedgerAccounts.Receivable(otherCustomer)));
    }

    [Fact]
    public async Task AReportThatWouldPushAReceivablePastItsBoundIsRefusedAloneInItsBatch()
    {
        var m = await App.NewMerchantAsync();
        var indebted = await App.CustomerAsync(m.MerchantId);
        var neighbour = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 2));
        var other = await App.NewMerchantAsync();
        var otherCustomer = await App.CustomerAsync(other.MerchantId);
        await App.MeterAsync(other.MerchantId, "gpt", "fixed", "requests", (0, 2));
        // Overage just below the bound, posted as a balanced ledger transaction: one more charge of 2 would cross it.
        var nearBound = Money.MaxBalance - 1m;
        await using (var c = new NpgsqlConnection(App.ConnectionString))
        {
            await c.ExecuteAsync("""
                BEGIN;
                INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, customer_id, effective_at)
                VALUES (@m, @t, 'test_overage', @t, @c, now());
                INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount) VALUES
                    (@m, @t, @receivable, 'USD', @amount), (@m, @t, 'usage_revenue', 'USD', -@amount);
                COMMIT;
                """, new { m = m.MerchantId, t = Ids.New("txn"), c = indebted, receivable = LedgerAccounts.Receivable(indebted), amount = nearBound });
        }

        var outcomes = await App.Services.GetRequiredService<ReportPoster>().PostAsync([
            new ReportItem(m.MerchantId, Body("a", neighbour, "gpt")),
            new ReportItem(m.MerchantId, Body("b", indebted, "gpt")),
            new ReportItem(other.MerchantId, Body("c", otherCustomer, "gpt")),
        ], CancellationToken.None);

        Assert.IsType<ReportOutcome.Created>(outcomes[0]);
        Assert.IsType<ReportRefusal.AmountOutOfRange>(Assert.IsType<ReportOutcome.Refused>(outcomes[1]).Refusal);
        Assert.IsType<ReportOutcome.Created>(outcomes[2]);
        Assert.Equal(nearBound, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(indebted)));
        Assert.Equal(2m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(neighbour)));
        Assert.Equal(2m, await App.BalanceAsync(other.MerchantId, LedgerAccounts.Receivable(otherCustomer)));
        Assert.Equal(0, await App.QueryAsync<int>("SELECT count(*)::int FROM requests WHERE merchant_id = @m AND request_id = 'b'", new { m = m.MerchantId }));

        // Over HTTP the same report is a 422 problem, and still posts nothing.
        (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "b", customer_id = indebted, meter_slug = "gpt" }))
            .AssertProblem(HttpStatusCode.UnprocessableEntity, "amount_out_of_range");
        Assert.Equal(nearBound, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(indebted)));
    }

    [Fact]
    public async Task MerchantWideSumsPastWhatADecimalHoldsStillRead()
    {
        var m = await App.NewMerchantAsync();
        // Nine customers, each owing just under the receivable bound: every balance within its bound, but usage revenue
        // (no cached row, no bound) sums to about 9e18, past the 7.9e18 a decimal holds at 10 places.
        var owed = Money.MaxBalance - 0.0000000001m;
        await using var c = new NpgsqlConnection(App.ConnectionString);
        for (var i = 0; i < 9; i++)
        {
            var customer = await App.CustomerAsync(m.MerchantId);
            await c.ExecuteAsync("""
                BEGIN;
                INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, customer_id, effective_at)
                VALUES (@m, @t, 'test_overage', @t, @c, now());
                INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount) VALUES
                    (@m, @t, @receivable, 'USD', @amount), (@m, @t, 'usage_revenue', 'USD', -@amount);
                COMMIT;
                """, new { m = m.MerchantId, t = Ids.New("txn"), c = customer, receivable = LedgerAccounts.Receivable(customer), amount = owed });
        }

        var byKind = await m.Client.GetJsonAsync("/v1/ledger/trial-balance?group_by=kind");
        Assert.Equal(HttpStatusCode.OK, byKind.Status);
        var revenue = byKind.Body!["lines"]!.AsArray().Single(l => (string)l!["kind"]! == "usage_revenue")!;
        Assert.Equal("8999999999999999999.9999999991", (string)revenue["credits"]!);
        Assert.Equal("-8999999999999999999.9999999991", (string)revenue["balance"]!);
        var receivables = byKind.Body["lines"]!.AsArray().Single(l => (string)l!["kind"]! == "receivable")!;
        Assert.Equal("8999999999999999999.9999999991", (string)receivables["debits"]!);
        var total = byKind.Body["totals"]![0]!;
        Assert.Equal(("8999999999999999999.9999999991", "8999999999999999999.9999999991", "0.0000000000"),
            ((string)total["debits"]!, (string)total["credits"]!, (string)total["balance"]!));

        var accounts = await m.Client.GetJsonAsync("/v1/ledger/accounts?limit=100");
        Assert.Equal(HttpStatusCode.OK, accounts.Status);
        Assert.Equal("-8999999999999999999.9999999991",
            (string)accounts.Body!["data"]!.AsArray().Single(a => (string)a!["account_id"]! == LedgerAccounts.UsageRevenue)!["balance"]!);
        Assert.True((bool)(await m.Client.GetJsonAsync("/v1/ledger/verify")).Body!["ok"]!);
    }
}
