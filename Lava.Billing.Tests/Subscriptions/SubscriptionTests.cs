using System.Net;
using Lava.Billing.Ledger;
using Lava.Billing.Subscriptions;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Lava.Billing.Tests.Subscriptions;

public class SubscriptionTests(ClockedLavaApp app) : ClockedApiTest(app)
{
    private sealed record World(LavaApp.Merchant M, string Customer, string MeterId, Seed.SeededPlan Plan);

    private async Task<World> ArrangeAsync(string rollover = "none", string bundleRollover = "none", decimal period = 10m, decimal included = 8m)
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        var meterId = await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        var plan = await App.PlanAsync(m.MerchantId, period, included, "month", rollover, bundleRollover, [meterId], (5m, 5m));
        return new World(m, customer, meterId, plan);
    }

    private async Task<string> SubscribeAsync(World w)
    {
        var r = await w.M.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = w.Customer, plan_id = w.Plan.PlanId });
        Assert.Equal(HttpStatusCode.Created, r.Status);
        return (string)r.Body!["subscription"]!["subscription_id"]!;
    }

    private async Task<(string Total, string Cycle, string Bundle)> CreditsAsync(World w)
    {
        var s = await w.M.Client.GetJsonAsync($"/v1/customers/{w.Customer}/subscription");
        var credits = s.Body!["subscription"]!["credits"]!;
        return ((string)credits["total_remaining"]!, (string)credits["cycle_remaining"]!, (string)credits["bundle_remaining"]!);
    }

    private Task<int> RunCyclesAsync() => App.Services.GetRequiredService<CycleProcessor>().RunDueAsync(App.Clock.GetUtcNow(), CancellationToken.None);

    private Task<object> UseAsync(World w, string id, int requests = 1) =>
        Task.WhenAll(Enumerable.Range(0, requests).Select(i => w.M.Client.PostJsonAsync("/v1/requests", new { request_id = $"{id}-{i}", customer_id = w.Customer, meter_slug = "gpt" })))
            .ContinueWith(t => (object)t.Result);

    [Fact]
    public async Task SubscribingRecordsThePaymentAndGrantsTheIncludedCredit()
    {
        var w = await ArrangeAsync();
        var r = await w.M.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = w.Customer, plan_id = w.Plan.PlanId });

        var s = r.Body!["subscription"]!;
        Assert.Equal("active", (string)s["status"]!);
        Assert.Equal("2026-01-15T12:00:00+00:00", (string)s["cycle_start_at"]!);
        Assert.Equal("2026-02-15T12:00:00+00:00", (string)s["cycle_end_at"]!);
        Assert.Equal("10.0000000000", (string)s["plan"]!["period_amount"]!);
        Assert.Equal(("8.0000000000", "8.0000000000", "0.0000000000"), await CreditsAsync(w));
        Assert.Equal(10m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.PaymentsClearing));
        Assert.Equal(-2m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.PlanRevenue));
    }

    [Fact]
    public async Task TheCustomerShowsItsActiveSubscriptionInShort()
    {
        var w = await ArrangeAsync();
        Assert.Null((await w.M.Client.GetJsonAsync($"/v1/customers/{w.Customer}")).Body!["subscription"]);
        var id = await SubscribeAsync(w);
        var shown = (await w.M.Client.GetJsonAsync($"/v1/customers/{w.Customer}")).Body!["subscription"]!;
        Assert.Equal(id, (string)shown["subscription_id"]!);
        Assert.Equal(w.Plan.PlanId, (string)shown["plan_id"]!);
        Assert.Equal("Plan", (string)shown["name"]!);
        Assert.Equal("active", (string)shown["status"]!);
        var listed = (await w.M.Client.GetJsonAsync("/v1/customers")).Body!["data"]![0]!["subscription"]!;
        Assert.Equal(id, (string)listed["subscription_id"]!);
    }

    [Fact]
    public async Task APlanDeletedWhileSubscribingIsEitherInUseOrGone()
    {
        var w = await ArrangeAsync();
        var subscribe = w.M.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = w.Customer, plan_id = w.Plan.PlanId });
        var delete = App.ClientWithKey(w.M.SecretKey).DeleteJsonAsync($"/v1/plans/{w.Plan.PlanId}");
        var (s, d) = (await subscribe, await delete);
        // Exactly one wins: a subscription on a live plan, or a deleted plan with none.
        Assert.True((s.Status == HttpStatusCode.Created) != (d.Status == HttpStatusCode.OK), $"subscribe {s.Status}, delete {d.Status}");
        var activeOnDeleted = await App.QueryAsync<long>("""
            SELECT count(*) FROM subscriptions s JOIN plans p USING (merchant_id, plan_id) WHERE s.status = 'active' AND p.deleted_at IS NOT NULL
            """);
        Assert.Equal(0, activeOnDeleted);
    }

    [Fact]
    public async Task ACustomerWithoutASubscriptionAnswersNull()
    {
        var w = await ArrangeAsync();
        var s = await w.M.Client.GetJsonAsync($"/v1/customers/{w.Customer}/subscription");
        Assert.Equal(HttpStatusCode.OK, s.Status);
        Assert.Null(s.Body!["subscription"]);
        (await w.M.Client.GetJsonAsync("/v1/customers/cus_nope/subscription")).AssertProblem(HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task ACustomerHasOneActiveSubscriptionEvenUnderARace()
    {
        var w = await ArrangeAsync();
        var results = await Task.WhenAll(Enumerable.Range(0, 5).Select(_ =>
            App.ClientWithKey(w.M.SecretKey).PostJsonAsync("/v1/subscriptions", new { customer_id = w.Customer, plan_id = w.Plan.PlanId })));
        Assert.Single(results, r => r.Status == HttpStatusCode.Created);
        Assert.All(results.Where(r => r.Status != HttpStatusCode.Created), r => r.AssertProblem(HttpStatusCode.Conflict, "subscription_exists"));
        Assert.Equal(10m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.PaymentsClearing));
    }

    [Fact]
    public async Task UsageDrawsCycleCreditThenBundleCreditThenOverage()
    {
        var w = await ArrangeAsync();
        await SubscribeAsync(w);
        var bought = await w.M.Client.SendAsync(HttpMethod.Post, $"/v1/credit_bundles/{w.Plan.BundleIds[0]}/purchases",
            new HttpRequestMessageContent(new { customer_id = w.Customer }, "k1"));
        Assert.Equal(HttpStatusCode.Created, bought.Status);
        Assert.Equal(("13.0000000000", "8.0000000000", "5.0000000000"), await CreditsAsync(w));

        await UseAsync(w, "a", 10);
        Assert.Equal(("3.0000000000", "0.0000000000", "3.0000000000"), await CreditsAsync(w));
        await UseAsync(w, "b", 5);
        Assert.Equal(("0.0000000000", "0.0000000000", "0.0000000000"), await CreditsAsync(w));
        Assert.Equal(2m, await App.BalanceAsync(w.M.MerchantId, LedgerAccounts.Receivable(w.Customer)));
        Assert.Equal(-15m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.UsageRevenue));
    }

    [Fact]
    public async Task AMeterNotOnThePlanBillsStraightToOverage()
    {
        var w = await ArrangeAsync();
        await SubscribeAsync(w);
        await App.MeterAsync(w.M.MerchantId, "other", "fixed", "requests", (0, 3));
        await w.M.Client.PostJsonAsync("/v1/requests", new { request_id = "x", customer_id = w.Customer, meter_slug = "other" });
        Assert.Equal(("8.0000000000", "8.0000000000", "0.0000000000"), await CreditsAsync(w));
        Assert.Equal(3m, await App.BalanceAsync(w.M.MerchantId, LedgerAccounts.Receivable(w.Customer)));
    }

    [Theory]
    [InlineData("none", "5.0000000000")]
    [InlineData("full", "8.0000000000")]
    public async Task AtCycleEndUnusedCycleCreditExpiresUnlessItRollsOver(string rollover, string cycleAfter)
    {
        var w = await ArrangeAsync(rollover: rollover, period: 5m, included: 5m);
        await SubscribeAsync(w);
        await UseAsync(w, "a", 2);

        App.Clock.Set(new DateTimeOffset(2026, 2, 15, 12, 0, 0, TimeSpan.Zero));
        Assert.Equal(1, await RunCyclesAsync());

        var s = (await w.M.Client.GetJsonAsync($"/v1/customers/{w.Customer}/subscription")).Body!["subscription"]!;
        Assert.Equal("2026-02-15T12:00:00+00:00", (string)s["cycle_start_at"]!);
        Assert.Equal("2026-03-15T12:00:00+00:00", (string)s["cycle_end_at"]!);
        Assert.Equal(cycleAfter, (string)s["credits"]!["cycle_remaining"]!);
        Assert.Equal(rollover == "none" ? -3m : 0m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.BreakageRevenue));
    }

    [Theory]
    [InlineData("none", "0.0000000000")]
    [InlineData("full", "5.0000000000")]
    public async Task BundleCreditFollowsTheBundleRolloverType(string bundleRollover, string bundleAfter)
    {
        var w = await ArrangeAsync(bundleRollover: bundleRollover);
        await SubscribeAsync(w);
        await w.M.Client.SendAsync(HttpMethod.Post, $"/v1/credit_bundles/{w.Plan.BundleIds[0]}/purchases", new HttpRequestMessageContent(new { customer_id = w.Customer }, "k"));
        App.Clock.Set(new DateTimeOffset(2026, 2, 16, 0, 0, 0, TimeSpan.Zero));
        await RunCyclesAsync();
        Assert.Equal(bundleAfter, (await CreditsAsync(w)).Bundle);
    }

    [Fact]
    public async Task CyclesMissedWhileDownAreClosedOneByOne()
    {
        var w = await ArrangeAsync();
        await SubscribeAsync(w);
        App.Clock.Set(new DateTimeOffset(2026, 4, 20, 0, 0, 0, TimeSpan.Zero));
        Assert.Equal(3, await RunCyclesAsync());
        var s = (await w.M.Client.GetJsonAsync($"/v1/customers/{w.Customer}/subscription")).Body!["subscription"]!;
        Assert.Equal("2026-04-15T12:00:00+00:00", (string)s["cycle_start_at"]!);
        Assert.Equal(40m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.PaymentsClearing));
        Assert.Equal(-24m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.BreakageRevenue));
    }

    [Fact]
    public async Task TwoProcessorsRacingGrantEachCycleOnce()
    {
        var w = await ArrangeAsync();
        await SubscribeAsync(w);
        App.Clock.Set(new DateTimeOffset(2026, 2, 20, 0, 0, 0, TimeSpan.Zero));
        var counts = await Task.WhenAll(RunCyclesAsync(), RunCyclesAsync(), RunCyclesAsync());
        Assert.Equal(1, counts.Sum());
        Assert.Equal(2, await App.QueryAsync<long>("SELECT count(*) FROM ledger_transactions WHERE kind = 'cycle_grant'"));
        Assert.Equal(20m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.PaymentsClearing));
    }

    /// <summary>
    /// A customer on a weekly plan whose meter charges 5 for each of a cycle's first two requests and 1 after them; returns
    /// a function that reports one request (at a time, or now) and gives its charge.
    /// </summary>
    private async Task<Func<string, DateTimeOffset?, Task<string>>> WeeklyGraduatedSubscriberAsync()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        var meterId = await App.MeterAsync(m.MerchantId, "grad", "fixed", "requests", (0, 5), (2, 1));
        var plan = await App.PlanAsync(m.MerchantId, 0m, 0m, "week", meterIds: [meterId]);
        await m.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = customer, plan_id = plan.PlanId });
        return async (id, timestamp) => (string)(await m.Client.PostJsonAsync("/v1/requests",
            new { request_id = id, customer_id = customer, meter_slug = "grad", timestamp })).Body!["charge"]!["amount"]!;
    }

    [Fact]
    public async Task GraduatedTiersStartOverEachCycle()
    {
        var report = await WeeklyGraduatedSubscriberAsync();
        Task<string> Charge(string id) => report(id, null);

        Assert.Equal(["5.0000000000", "5.0000000000", "1.0000000000"], [await Charge("a"), await Charge("b"), await Charge("c")]);
        App.Clock.Advance(TimeSpan.FromDays(7));
        await RunCyclesAsync();
        Assert.Equal("5.0000000000", await Charge("d"));
    }

    [Fact]
    public async Task AReportDatedInTheCycleBeforeARenewalCountsInTheCurrentCycle()
    {
        var report = await WeeklyGraduatedSubscriberAsync();
        var ranAt = App.Clock.GetUtcNow().AddHours(1);
        Task<string> Charge(string id, DateTimeOffset? timestamp = null) => report(id, timestamp);
        Assert.Equal(["5.0000000000", "5.0000000000"], [await Charge("a"), await Charge("b")]);

        App.Clock.Advance(TimeSpan.FromDays(7));
        await RunCyclesAsync();
        // It ran in the first cycle (its third request: 1 there), but is reported after the renewal closed that cycle: it
        // counts in the current one, at its first tier (docs/design.md, "Usage periods").
        Assert.Equal("5.0000000000", await Charge("late", ranAt));
        Assert.Equal("5.0000000000", await Charge("d"));
        Assert.Equal("1.0000000000", await Charge("e"));
    }

    [Fact]
    public async Task CancellingEndsTheSubscriptionAtCycleEndWithoutAnotherGrant()
    {
        var w = await ArrangeAsync();
        var id = await SubscribeAsync(w);
        var cancelled = await w.M.Client.DeleteJsonAsync($"/v1/subscriptions/{id}");
        Assert.True((bool)cancelled.Body!["success"]!);
        var pending = (await w.M.Client.GetJsonAsync($"/v1/customers/{w.Customer}/subscription")).Body!["subscription"]!["pending_change"]!;
        Assert.Equal("cancellation", (string)pending["type"]!);
        Assert.Equal("2026-02-15T12:00:00+00:00", (string)pending["effective_at"]!);

        App.Clock.Set(new DateTimeOffset(2026, 3, 1, 0, 0, 0, TimeSpan.Zero));
        await RunCyclesAsync();
        Assert.Null((await w.M.Client.GetJsonAsync($"/v1/customers/{w.Customer}/subscription")).Body!["subscription"]);
        var listed = await w.M.Client.GetJsonAsync($"/v1/subscriptions?status=cancelled&customer_id={w.Customer}");
        Assert.Equal("cancelled", (string)listed.Body!["data"]![0]!["status"]!);
        Assert.Equal(10m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.PaymentsClearing));
        Assert.Equal(HttpStatusCode.Created, (await w.M.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = w.Customer, plan_id = w.Plan.PlanId })).Status);
    }

    [Fact]
    public async Task TheAutoTopUpBundleMustBelongToThePlan()
    {
        var w = await ArrangeAsync();
        var id = await SubscribeAsync(w);
        var other = await App.PlanAsync(w.M.MerchantId, 1m, 1m, bundles: (1m, 1m));
        (await w.M.Client.PatchJsonAsync($"/v1/subscriptions/{id}", new { auto_top_up_bundle_id = other.BundleIds[0] }))
            .AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.True((bool)(await w.M.Client.PatchJsonAsync($"/v1/subscriptions/{id}", new { auto_top_up_bundle_id = w.Plan.BundleIds[0] })).Body!["success"]!);
        var s = await w.M.Client.GetJsonAsync($"/v1/subscriptions/{id}");
        Assert.Equal(w.Plan.BundleIds[0], (string)s.Body!["subscription"]!["auto_top_up_bundle_id"]!);
    }

    [Fact]
    public async Task ACustomerWithAnActiveSubscriptionCannotBeDeleted()
    {
        var w = await ArrangeAsync();
        var id = await SubscribeAsync(w);
        (await w.M.Client.DeleteJsonAsync($"/v1/customers/{w.Customer}")).AssertProblem(HttpStatusCode.Conflict, "customer_has_subscription");
        await w.M.Client.DeleteJsonAsync($"/v1/subscriptions/{id}");
        App.Clock.Set(new DateTimeOffset(2026, 2, 16, 0, 0, 0, TimeSpan.Zero));
        await RunCyclesAsync();
        Assert.Equal(HttpStatusCode.OK, (await w.M.Client.DeleteJsonAsync($"/v1/customers/{w.Customer}")).Status);
    }

    [Fact]
    public async Task AnUpdateWithoutTheTopUpMemberLeavesItAndNullClearsIt()
    {
        var w = await ArrangeAsync();
        var id = await SubscribeAsync(w);
        await w.M.Client.PatchJsonAsync($"/v1/subscriptions/{id}", new { auto_top_up_bundle_id = w.Plan.BundleIds[0] });
        Assert.True((bool)(await w.M.Client.PatchJsonAsync($"/v1/subscriptions/{id}", new { })).Body!["success"]!);
        Assert.Equal(w.Plan.BundleIds[0], (string)(await w.M.Client.GetJsonAsync($"/v1/subscriptions/{id}")).Body!["subscription"]!["auto_top_up_bundle_id"]!);
        await w.M.Client.PatchJsonAsync($"/v1/subscriptions/{id}", Http.Json("{\"auto_top_up_bundle_id\": null}"));
        Assert.Null((await w.M.Client.GetJsonAsync($"/v1/subscriptions/{id}")).Body!["subscription"]!["auto_top_up_bundle_id"]);
    }

    [Fact]
    public async Task DeletingTheTopUpBundleFromThePlanClearsItOnSubscriptions()
    {
        var w = await ArrangeAsync();
        var id = await SubscribeAsync(w);
        await w.M.Client.PatchJsonAsync($"/v1/subscriptions/{id}", new { auto_top_up_bundle_id = w.Plan.BundleIds[0] });
        var updated = await w.M.Client.PatchJsonAsync($"/v1/plans/{w.Plan.PlanId}",
            new { credit_bundles = new[] { new { credit_bundle_id = w.Plan.BundleIds[0], name = "Pack", cost = "5", credit_amount = "5", is_deleted = true } } });
        Assert.Equal(HttpStatusCode.OK, updated.Status);
        Assert.Null((await w.M.Client.GetJsonAsync($"/v1/subscriptions/{id}")).Body!["subscription"]!["auto_top_up_bundle_id"]);
    }

    [Fact]
    public async Task BadSubscriptionInputIsRefused()
    {
        var w = await ArrangeAsync();
        (await w.M.Client.PostJsonAsync("/v1/subscriptions", new { plan_id = w.Plan.PlanId })).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        (await w.M.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = w.Customer, plan_id = "pln_nope" })).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await w.M.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = "cus_nope", plan_id = w.Plan.PlanId })).AssertProblem(HttpStatusCode.NotFound, "not_found");
        var other = await App.NewMerchantAsync();
        (await other.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = w.Customer, plan_id = w.Plan.PlanId })).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await w.M.Client.GetJsonAsync("/v1/subscriptions?status=paused")).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM subscriptions"));
    }

    [Fact]
    public async Task ASubscriptionThatFailsToRenewDoesNotStopAnotherFromRenewing()
    {
        var poisoned = await ArrangeAsync();
        var poisonedId = await SubscribeAsync(poisoned);
        // Due first, so a run that stopped at the first failure would renew nothing.
        App.Clock.Advance(TimeSpan.FromHours(1));
        var healthy = await ArrangeAsync();
        var healthyId = await SubscribeAsync(healthy);
        await using var owner = new Npgsql.NpgsqlConnection(App.ConnectionString);
        await Dapper.SqlMapper.ExecuteAsync(owner, $"""
            CREATE FUNCTION refuse_one_renewal() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.subscription_id = '{poisonedId}' THEN RAISE EXCEPTION 'this subscription cannot renew'; END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER refuse_one_renewal BEFORE UPDATE ON subscriptions FOR EACH ROW EXECUTE FUNCTION refuse_one_renewal();
            """);
        try
        {
            App.Clock.Set(new DateTimeOffset(2026, 2, 16, 0, 0, 0, TimeSpan.Zero));
            await RunCyclesAsync();

            int CycleOf(string id) => App.QueryAsync<int>("SELECT cycle_number FROM subscriptions WHERE subscription_id = @id", new { id }).Result;
            Assert.Equal(2, CycleOf(healthyId));
            Assert.Equal(1, CycleOf(poisonedId));
            Assert.Equal(("8.0000000000", "8.0000000000", "0.0000000000"), await CreditsAsync(healthy));

            // Retried on the next run, once whatever stopped it is gone.
            await Dapper.SqlMapper.ExecuteAsync(owner, "DROP TRIGGER refuse_one_renewal ON subscriptions; DROP FUNCTION refuse_one_renewal();");
            await RunCyclesAsync();
            Assert.Equal(2, CycleOf(poisonedId));
        }
        finally
        {
            await Dapper.SqlMapper.ExecuteAsync(owner, "DROP TRIGGER IF EXISTS refuse_one_renewal ON subscriptions; DROP FUNCTION IF EXISTS refuse_one_renewal();");
        }
    }
}

/// <summary>A JSON body with an Idempotency-Key header.</summary>
public sealed class HttpRequestMessageContent : StringContent
{
    public HttpRequestMessageContent(object body, string idempotencyKey)
        : base(System.Text.Json.JsonSerializer.Serialize(body), System.Text.Encoding.UTF8, "application/json") =>
        Headers.Add("Idempotency-Key", idempotencyKey);
}
