using System.Net;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Checkout;

public class CheckoutSessionTests(ClockedLavaApp app) : ClockedApiTest(app)
{
    private sealed record World(LavaApp.Merchant M, Seed.SeededPlan Plan);

    /// <summary>A plan of 10 a month with 8 included credit and one bundle: 5 buys 6 credit.</summary>
    private async Task<World> ArrangeAsync()
    {
        var m = await App.NewMerchantAsync();
        var plan = await App.PlanAsync(m.MerchantId, 10m, 8m, "month", bundles: (5m, 6m));
        return new World(m, plan);
    }

    private static async Task<string> CreateSessionAsync(LavaApp.Merchant m, object body)
    {
        var r = await m.Client.PostJsonAsync("/v1/checkout_sessions", body);
        Assert.Equal(HttpStatusCode.Created, r.Status);
        return (string)r.Body!["checkout_session_id"]!;
    }

    private Task<string> SubscriptionSessionAsync(World w, string? customerId = null) =>
        CreateSessionAsync(w.M, new { checkout_mode = "subscription", origin_url = "https://shop.example/after", plan_id = w.Plan.PlanId, customer_id = customerId });

    private Task<int> CountAsync(string sql, string merchantId) => App.QueryAsync<int>(sql, new { m = merchantId });

    [Fact]
    public async Task CreatingASessionAnswersTheSdksFieldsWithATokenTheAmountAndAnExpiry()
    {
        var w = await ArrangeAsync();
        var r = await w.M.Client.PostJsonAsync("/v1/checkout_sessions",
            new { checkout_mode = "subscription", origin_url = "https://shop.example/after", plan_id = w.Plan.PlanId });

        Assert.Equal(HttpStatusCode.Created, r.Status);
        var s = r.Body!;
        Assert.StartsWith("cs_", (string)s["checkout_session_id"]!);
        Assert.Matches("^cst_[0-9A-Za-z]{32}$", (string)s["checkout_session_token"]!);
        Assert.Equal("subscription", (string)s["checkout_mode"]!);
        Assert.Equal("https://shop.example/after", (string)s["origin_url"]!);
        Assert.Equal(w.Plan.PlanId, (string)s["plan_id"]!);
        Assert.Equal("10.0000000000", (string)s["amount"]!);
        Assert.Equal("open", (string)s["status"]!);
        Assert.Equal(App.Clock.GetUtcNow().AddDays(1), DateTimeOffset.Parse((string)s["expires_at"]!));
        Assert.Null(s["completed_at"]);
        Assert.EndsWith("/checkout/" + (string)s["checkout_session_token"]!, (string)s["checkout_url"]!);
    }

    [Fact]
    public async Task CompletingASubscriptionSessionCreatesTheCustomerSubscribesItAndPostsThePayment()
    {
        var w = await ArrangeAsync();
        var id = await SubscriptionSessionAsync(w);

        var done = await w.M.Client.PostJsonAsync($"/v1/checkout_sessions/{id}/complete", new { payment_reference = "pi_123", amount = "10" });

        Assert.Equal(HttpStatusCode.OK, done.Status);
        Assert.Equal("completed", (string)done.Body!["status"]!);
        Assert.Equal("pi_123", (string)done.Body["payment_reference"]!);
        var customerId = (string)done.Body["customer_id"]!;
        var subscriptionId = (string)done.Body["subscription_id"]!;
        var sub = await w.M.Client.GetJsonAsync($"/v1/customers/{customerId}/subscription");
        Assert.Equal(subscriptionId, (string)sub.Body!["subscription"]!["subscription_id"]!);
        Assert.Equal("8.0000000000", (string)sub.Body["subscription"]!["credits"]!["total_remaining"]!);
        Assert.Equal(10m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.PaymentsClearing));
    }

    [Fact]
    public async Task CompletingTwiceWithTheSamePaymentIsAReplayAndAnotherPaymentIsRefused()
    {
        var w = await ArrangeAsync();
        var customer = await App.CustomerAsync(w.M.MerchantId);
        var id = await SubscriptionSessionAsync(w, customer);
        var first = await w.M.Client.PostJsonAsync($"/v1/checkout_sessions/{id}/complete", new { payment_reference = "pi_1" });

        var again = await w.M.Client.PostJsonAsync($"/v1/checkout_sessions/{id}/complete", new { payment_reference = "pi_1" });
        var other = await w.M.Client.PostJsonAsync($"/v1/checkout_sessions/{id}/complete", new { payment_reference = "pi_2" });

        Assert.Equal(HttpStatusCode.OK, first.Status);
        Assert.Equal(HttpStatusCode.OK, again.Status);
        Assert.Equal("true", again.Response.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.Equal((string)first.Body!["subscription_id"]!, (string)again.Body!["subscription_id"]!);
        other.AssertProblem(HttpStatusCode.Conflict, "checkout_session_completed");
        Assert.Equal(1, await CountAsync("SELECT count(*)::int FROM subscriptions WHERE merchant_id = @m", w.M.MerchantId));
        Assert.Equal(10m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.PaymentsClearing));
    }

    [Fact]
    public async Task APaymentCompletesOneSessionOnly()
    {
        var w = await ArrangeAsync();
        var a = await SubscriptionSessionAsync(w);
        var b = await SubscriptionSessionAsync(w);
        Assert.Equal(HttpStatusCode.OK, (await w.M.Client.PostJsonAsync($"/v1/checkout_sessions/{a}/complete", new { payment_reference = "pi_9" })).Status);

        var second = await w.M.Client.PostJsonAsync($"/v1/checkout_sessions/{b}/complete", new { payment_reference = "pi_9" });

        second.AssertProblem(HttpStatusCode.Conflict, "payment_reference_used");
        Assert.Equal("open", (string)(await w.M.Client.GetJsonAsync($"/v1/checkout_sessions/{b}")).Body!["status"]!);
    }

    [Fact]
    public async Task CompletingACreditBundleSessionBuysTheBundleOnce()
    {
        var w = await ArrangeAsync();
        var customer = await App.CustomerAsync(w.M.MerchantId);
        Assert.Equal(HttpStatusCode.Created, (await w.M.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = customer, plan_id = w.Plan.PlanId })).Status);
        var id = await CreateSessionAsync(w.M, new
        {
            checkout_mode = "credit_bundle", origin_url = "https://shop.example", customer_id = customer, credit_bundle_id = w.Plan.BundleIds[0],
        });

        var done = await w.M.Client.PostJsonAsync($"/v1/checkout_sessions/{id}/complete", new { payment_reference = "pi_b", amount = 5 });
        var again = await w.M.Client.PostJsonAsync($"/v1/checkout_sessions/{id}/complete", new { payment_reference = "pi_b" });

        Assert.Equal(HttpStatusCode.OK, done.Status);
        Assert.StartsWith("txn_", (string)done.Body!["transaction_id"]!);
        Assert.Equal(HttpStatusCode.OK, again.Status);
        Assert.Equal(-6m, await App.BalanceAsync(w.M.MerchantId, LedgerAccounts.CreditsBundle(customer)));
        Assert.Equal(15m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.PaymentsClearing));
    }

    [Fact]
    public async Task ABundleSessionForACustomerWithoutThePlanIsRefusedAndLeavesTheSessionOpen()
    {
        var w = await ArrangeAsync();
        var customer = await App.CustomerAsync(w.M.MerchantId);
        var id = await CreateSessionAsync(w.M, new
        {
            checkout_mode = "credit_bundle", origin_url = "https://shop.example", customer_id = customer, credit_bundle_id = w.Plan.BundleIds[0],
        });

        var refused = await w.M.Client.PostJsonAsync($"/v1/checkout_sessions/{id}/complete", new { payment_reference = "pi_x" });
        refused.AssertProblem(HttpStatusCode.UnprocessableEntity, "bundle_not_on_plan");
        // The refusal freed the session: another payment may complete it once the customer is subscribed.
        await w.M.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = customer, plan_id = w.Plan.PlanId });
        Assert.Equal(HttpStatusCode.OK, (await w.M.Client.PostJsonAsync($"/v1/checkout_sessions/{id}/complete", new { payment_reference = "pi_y" })).Status);
    }

    [Fact]
    public async Task AnExpiredSessionIsGoneAndPostsNothing()
    {
        var w = await ArrangeAsync();
        var id = await SubscriptionSessionAsync(w);
        App.Clock.Advance(TimeSpan.FromDays(1));

        var late = await w.M.Client.PostJsonAsync($"/v1/checkout_sessions/{id}/complete", new { payment_reference = "pi_late" });

        late.AssertProblem(HttpStatusCode.Gone, "checkout_session_expired");
        Assert.Equal("expired", (string)(await w.M.Client.GetJsonAsync($"/v1/checkout_sessions/{id}")).Body!["status"]!);
        Assert.Equal(0, await CountAsync("SELECT count(*)::int FROM customers WHERE merchant_id = @m", w.M.MerchantId));
        Assert.Equal(0m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.PaymentsClearing));
    }

    [Fact]
    public async Task AnotherMerchantsSessionIsNotFound()
    {
        var w = await ArrangeAsync();
        var id = await SubscriptionSessionAsync(w);
        var other = await App.NewMerchantAsync("Other");

        Assert.Equal(HttpStatusCode.NotFound, (await other.Client.GetJsonAsync($"/v1/checkout_sessions/{id}")).Status);
        var complete = await other.Client.PostJsonAsync($"/v1/checkout_sessions/{id}/complete", new { payment_reference = "pi_o" });
        Assert.Equal(HttpStatusCode.NotFound, complete.Status);
        Assert.Equal("open", (string)(await w.M.Client.GetJsonAsync($"/v1/checkout_sessions/{id}")).Body!["status"]!);
        // Nor can a session name another merchant's plan.
        var foreignPlan = await other.Client.PostJsonAsync("/v1/checkout_sessions",
            new { checkout_mode = "subscription", origin_url = "https://shop.example", plan_id = w.Plan.PlanId });
        Assert.Equal(HttpStatusCode.NotFound, foreignPlan.Status);
    }

    [Theory]
    [InlineData("-1", "validation_failed", 400)]
    [InlineData("1000000000000000.1", "validation_failed", 400)]
    [InlineData("0.00000000001", "validation_failed", 400)]
    [InlineData("9.99", "amount_mismatch", 422)]
    public async Task AnAmountOutOfBoundsOrDifferentFromTheSessionsIsRefusedAndPostsNothing(string amount, string code, int status)
    {
        var w = await ArrangeAsync();
        var id = await SubscriptionSessionAsync(w);

        var r = await w.M.Client.PostJsonAsync($"/v1/checkout_sessions/{id}/complete", new { payment_reference = "pi_a", amount });

        r.AssertProblem((HttpStatusCode)status, code);
        Assert.Equal("open", (string)(await w.M.Client.GetJsonAsync($"/v1/checkout_sessions/{id}")).Body!["status"]!);
        Assert.Equal(0m, await App.EntriesSumAsync(w.M.MerchantId, LedgerAccounts.PaymentsClearing));
    }

    [Theory]
    [InlineData("""{"origin_url":"https://a.example","plan_id":"pln_x"}""")]
    [InlineData("""{"checkout_mode":"gift","origin_url":"https://a.example","plan_id":"pln_x"}""")]
    [InlineData("""{"checkout_mode":"subscription","origin_url":"javascript:alert(1)","plan_id":"pln_x"}""")]
    [InlineData("""{"checkout_mode":"subscription","origin_url":"https://a.example"}""")]
    [InlineData("""{"checkout_mode":"credit_bundle","origin_url":"https://a.example","credit_bundle_id":"bnd_x"}""")]
    public async Task AMalformedSessionIsRefusedWith400(string body)
    {
        var m = await App.NewMerchantAsync();
        var r = await m.Client.SendAsync(HttpMethod.Post, "/v1/checkout_sessions", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, r.Status);
    }
}
