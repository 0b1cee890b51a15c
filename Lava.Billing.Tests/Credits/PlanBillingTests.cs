using System.Net;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Infrastructure;
using Lava.Billing.Tests.Subscriptions;

namespace Lava.Billing.Tests.Credits;

/// <summary>Bundle purchases, auto top-up and billing-disabled entitlements.</summary>
public class PlanBillingTests(ClockedLavaApp app) : ClockedApiTest(app)
{
    private sealed record World(LavaApp.Merchant M, string Customer, string MeterId, Seed.SeededPlan Plan);

    private async Task<World> ArrangeAsync(decimal packCost = 4m, decimal packCredit = 5m, bool subscribe = true)
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        var meterId = await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 2));
        var plan = await App.PlanAsync(m.MerchantId, 1m, 1m, meterIds: [meterId], bundles: (packCost, packCredit));
        if (subscribe) await m.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = customer, plan_id = plan.PlanId });
        return new World(m, customer, meterId, plan);
    }

    private static Task<(HttpStatusCode Status, System.Text.Json.Nodes.JsonNode? Body, HttpResponseMessage Response)> Buy(World w, string key, string? bundle = null, string? customer = null) =>
        w.M.Client.SendAsync(HttpMethod.Post, $"/v1/credit_bundles/{bundle ?? w.Plan.BundleIds[0]}/purchases",
            new HttpRequestMessageContent(new { customer_id = customer ?? w.Customer }, key));

    [Fact]
    public async Task ABundlePurchaseIsRecordedOnceAndReplayedOnTheSameKey()
    {
        var w = await ArrangeAsync(packCost: 4m, packCredit: 5m);
        var first = await Buy(w, "order-1");
        var again = await Buy(w, "order-1");

        Assert.Equal(HttpStatusCode.Created, first.Status);
        Assert.Equal(first.Body!.ToJsonString(), again.Body!.ToJsonString());
        Assert.Equal("true", again.Response.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal(-5m, await App.BalanceAsync(w.M.MerchantId, LedgerAccounts.CreditsBundle(w.Customer)));
        Assert.Equal(1m + 4m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.PaymentsClearing));
        Assert.Equal(1m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.BonusCreditExpense));
    }

    [Fact]
    public async Task ARetriedPurchaseReplaysEvenAfterTheBundleWasDeleted()
    {
        var w = await ArrangeAsync();
        var first = await Buy(w, "order-7");
        await App.QueryAsync<int>("UPDATE credit_bundles SET deleted_at = now() WHERE credit_bundle_id = @b RETURNING 1", new { b = w.Plan.BundleIds[0] });

        var again = await Buy(w, "order-7");

        Assert.Equal(HttpStatusCode.Created, again.Status);
        Assert.Equal(first.Body!.ToJsonString(), again.Body!.ToJsonString());
        (await Buy(w, "order-8")).AssertProblem(HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task ConcurrentPurchasesWithOneKeyPostOnce()
    {
        var w = await ArrangeAsync();
        var results = await Task.WhenAll(Enumerable.Range(0, 10).Select(_ => Buy(w with { M = w.M with { Client = App.ClientWithKey(w.M.SecretKey) } }, "same")));
        Assert.All(results, r => Assert.Equal(HttpStatusCode.Created, r.Status));
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(*) FROM ledger_transactions WHERE kind = 'bundle_purchase'"));
    }

    [Fact]
    public async Task PurchasesThatCannotBeRecordedAreRefused()
    {
        var w = await ArrangeAsync();
        var other = await App.PlanAsync(w.M.MerchantId, 1m, 1m, bundles: (1m, 1m));
        await Buy(w, "k1");
        (await Buy(w, "k-other-plan", bundle: other.BundleIds[0])).AssertProblem(HttpStatusCode.UnprocessableEntity, "bundle_not_on_plan");
        var second = await App.CustomerAsync(w.M.MerchantId);
        (await Buy(w, "k-unsubscribed", customer: second)).AssertProblem(HttpStatusCode.UnprocessableEntity, "bundle_not_on_plan");
        await w.M.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = second, plan_id = w.Plan.PlanId });
        (await Buy(w, "k1", customer: second)).AssertProblem(HttpStatusCode.Conflict, "idempotency_conflict");
        (await Buy(w, "k2", bundle: "bnd_nope")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        var noKey = await w.M.Client.PostJsonAsync($"/v1/credit_bundles/{w.Plan.BundleIds[0]}/purchases", new { customer_id = w.Customer });
        noKey.AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        var noBody = await w.M.Client.SendAsync(HttpMethod.Post, $"/v1/credit_bundles/{w.Plan.BundleIds[0]}/purchases");
        noBody.AssertProblem(HttpStatusCode.UnsupportedMediaType, "unsupported_media_type");
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(*) FROM ledger_transactions WHERE kind = 'bundle_purchase'"));
    }

    [Fact]
    public async Task AutoTopUpBuysPacksBeforeAChargeWouldGoIntoOverage()
    {
        var w = await ArrangeAsync(packCost: 4m, packCredit: 5m);
        var id = (string)(await w.M.Client.GetJsonAsync($"/v1/customers/{w.Customer}/subscription")).Body!["subscription"]!["subscription_id"]!;
        await w.M.Client.PatchJsonAsync($"/v1/subscriptions/{id}", new { auto_top_up_bundle_id = w.Plan.BundleIds[0] });
        await App.MeterAsync(w.M.MerchantId, "big", "fixed", "requests", (0, 11));
        await App.QueryAsync<int>("INSERT INTO plan_meters SELECT merchant_id, @p, meter_id FROM meters WHERE meter_slug = 'big' RETURNING 1", new { p = w.Plan.PlanId });

        // 1 cycle credit; a charge of 11 needs two packs of 5.
        var r = await w.M.Client.PostJsonAsync("/v1/requests", new { request_id = "big", customer_id = w.Customer, meter_slug = "big" });

        Assert.Equal("0.0000000000", (string)r.Body!["customer_balance"]!["credits_remaining"]!);
        Assert.Equal("8.0000000000", (string)r.Body["customer_balance"]!["receivable"]!);   // two packs at 4, no overage
        Assert.Equal(2, await App.QueryAsync<long>("SELECT count(*) FROM ledger_transactions WHERE kind = 'auto_top_up'"));
        Assert.Equal(0m, await App.BalanceAsync(w.M.MerchantId, LedgerAccounts.CreditsBundle(w.Customer)));
    }

    [Fact]
    public async Task AutoTopUpStopsAtTheCapPerCycle()
    {
        var w = await ArrangeAsync(packCost: 1m, packCredit: 1m);
        var id = (string)(await w.M.Client.GetJsonAsync($"/v1/customers/{w.Customer}/subscription")).Body!["subscription"]!["subscription_id"]!;
        await w.M.Client.PatchJsonAsync($"/v1/subscriptions/{id}", new { auto_top_up_bundle_id = w.Plan.BundleIds[0] });
        for (var i = 0; i < 4; i++)
            await w.M.Client.PostJsonAsync("/v1/requests", new { request_id = $"r{i}", customer_id = w.Customer, meter_slug = "gpt" });
        // Default cap: 3 packs a cycle. 8 charged = 1 cycle credit + 3 packs + 4 overage.
        Assert.Equal(3, await App.QueryAsync<long>("SELECT count(*) FROM ledger_transactions WHERE kind = 'auto_top_up'"));
        Assert.Equal(3m + 4m, await App.BalanceAsync(w.M.MerchantId, LedgerAccounts.Receivable(w.Customer)));
    }

    [Fact]
    public async Task ABillingDisabledReportRecordsUsageAtZeroChargeWhenTheMeterIsOnThePlan()
    {
        var w = await ArrangeAsync();
        var r = await w.M.Client.PostJsonAsync("/v1/requests", new { request_id = "free", customer_id = w.Customer, meter_slug = "gpt", disable_billing = true });
        Assert.Equal(HttpStatusCode.Created, r.Status);
        Assert.Equal("billing_disabled", (string)r.Body!["mode"]!);
        Assert.Equal("0.0000000000", (string)r.Body["charge"]!["amount"]!);
        Assert.Equal("1.0000000000", (string)r.Body["customer_balance"]!["credits_remaining"]!);
        Assert.Equal(0m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.UsageRevenue));
    }

    [Fact]
    public async Task ABillingDisabledReportForAMeterOffThePlanIsRefusedWith403()
    {
        var w = await ArrangeAsync();
        await App.MeterAsync(w.M.MerchantId, "off", "fixed", "requests", (0, 1));
        (await w.M.Client.PostJsonAsync("/v1/requests", new { request_id = "x", customer_id = w.Customer, meter_slug = "off", disable_billing = true }))
            .AssertProblem(HttpStatusCode.Forbidden, "meter_not_on_plan");
        var unsubscribed = await App.CustomerAsync(w.M.MerchantId);
        (await w.M.Client.PostJsonAsync("/v1/requests", new { request_id = "y", customer_id = unsubscribed, meter_slug = "gpt", disable_billing = true }))
            .AssertProblem(HttpStatusCode.Forbidden, "meter_not_on_plan");
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM requests"));
    }
}
