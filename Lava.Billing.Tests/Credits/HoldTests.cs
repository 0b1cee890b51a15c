using System.Net;
using Dapper;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Infrastructure;
using Npgsql;

namespace Lava.Billing.Tests.Credits;

public class HoldTests(ClockedLavaApp app) : ClockedApiTest(app)
{
    private async Task<(LavaApp.Merchant M, string Customer)> ArrangeAsync(decimal credits = 10m, decimal creditLimit = 0m)
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 3));
        if (credits > 0) await App.GrantAsync(m.MerchantId, customer, credits);
        await using var c = new NpgsqlConnection(App.ConnectionString);
        await c.ExecuteAsync("UPDATE customers SET credit_limit = @l WHERE customer_id = @c", new { l = creditLimit, c = customer });
        return (m, customer);
    }

    private static Task<(HttpStatusCode Status, System.Text.Json.Nodes.JsonNode? Body, HttpResponseMessage Response)> Hold(
        LavaApp.Merchant m, string customer, string amount, int? expiresIn = null) =>
        m.Client.PostJsonAsync("/v1/holds", new { customer_id = customer, amount, expires_in = expiresIn });

    private async Task<string> AvailableAsync(LavaApp.Merchant m, string customer) =>
        (string)(await m.Client.GetJsonAsync($"/v1/customers/{customer}/balance")).Body!["available"]!;

    [Fact]
    public async Task TheBalanceShowsCreditsPlusUnusedCreditLimitMinusHolds()
    {
        var (m, customer) = await ArrangeAsync(credits: 10m, creditLimit: 5m);
        await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r", customer_id = customer, meter_slug = "gpt" });
        await Hold(m, customer, "2.5");
        var b = (await m.Client.GetJsonAsync($"/v1/customers/{customer}/balance")).Body!;
        Assert.Equal("7.0000000000", (string)b["credits_remaining"]!);
        Assert.Equal("5.0000000000", (string)b["credit_limit"]!);
        Assert.Equal("2.5000000000", (string)b["held"]!);
        Assert.Equal("9.5000000000", (string)b["available"]!);
    }

    [Fact]
    public async Task AHoldBeyondWhatIsAvailableIsRefusedWith402()
    {
        var (m, customer) = await ArrangeAsync(credits: 10m);
        Assert.Equal(HttpStatusCode.Created, (await Hold(m, customer, "6")).Status);
        (await Hold(m, customer, "4.0000000001")).AssertProblem(HttpStatusCode.PaymentRequired, "insufficient_credits");
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(*) FROM holds"));
    }

    [Fact]
    public async Task FiftyRacingHoldsNeverReserveMoreThanIsAvailable()
    {
        var (m, customer) = await ArrangeAsync(credits: 10m, creditLimit: 2.5m);
        var results = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => Hold(m with { Client = App.ClientWithKey(m.SecretKey) }, customer, "0.5")));
        Assert.Equal(25, results.Count(r => r.Status == HttpStatusCode.Created));
        Assert.Equal(25, results.Count(r => r.Status == HttpStatusCode.PaymentRequired));
        Assert.Equal(12.5m, await App.QueryAsync<decimal>("SELECT sum(amount) FROM holds WHERE status = 'active'"));
        Assert.Equal("0.0000000000", await AvailableAsync(m, customer));
    }

    [Fact]
    public async Task VoidingOrExpiryReleasesAHold()
    {
        var (m, customer) = await ArrangeAsync(credits: 10m);
        var a = await Hold(m, customer, "4", expiresIn: 60);
        await Hold(m, customer, "4", expiresIn: 600);
        Assert.Equal("2.0000000000", await AvailableAsync(m, customer));

        var voided = await m.Client.DeleteJsonAsync($"/v1/holds/{a.Body!["hold_id"]}");
        Assert.Equal("voided", (string)voided.Body!["status"]!);
        Assert.Equal("6.0000000000", await AvailableAsync(m, customer));
        (await m.Client.DeleteJsonAsync($"/v1/holds/{a.Body["hold_id"]}")).AssertProblem(HttpStatusCode.Conflict, "hold_not_active");

        App.Clock.Advance(TimeSpan.FromSeconds(601));
        Assert.Equal("10.0000000000", await AvailableAsync(m, customer));
    }

    [Fact]
    public async Task AReportCapturesItsHoldAndReleasesTheRest()
    {
        var (m, customer) = await ArrangeAsync(credits: 10m);
        var hold = await Hold(m, customer, "5");
        var holdId = (string)hold.Body!["hold_id"]!;

        var r = await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r", customer_id = customer, meter_slug = "gpt", hold_id = holdId });

        Assert.Equal(HttpStatusCode.Created, r.Status);
        Assert.Equal(holdId, (string)r.Body!["hold_id"]!);
        var captured = (await m.Client.GetJsonAsync($"/v1/holds/{holdId}")).Body!;
        Assert.Equal("captured", (string)captured["status"]!);
        Assert.Equal("3.0000000000", (string)captured["captured_amount"]!);
        Assert.Equal("r", (string)captured["request_id"]!);
        Assert.Equal("7.0000000000", await AvailableAsync(m, customer));

        (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r2", customer_id = customer, meter_slug = "gpt", hold_id = holdId }))
            .AssertProblem(HttpStatusCode.Conflict, "hold_not_active");
    }

    [Fact]
    public async Task AnotherCustomersOrMerchantsHoldIsNotFound()
    {
        var (m, customer) = await ArrangeAsync();
        var other = await App.CustomerAsync(m.MerchantId);
        var holdId = (string)(await Hold(m, customer, "1")).Body!["hold_id"]!;
        (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r", customer_id = other, meter_slug = "gpt", hold_id = holdId }))
            .AssertProblem(HttpStatusCode.NotFound, "not_found");
        var b = await App.NewMerchantAsync();
        (await b.Client.GetJsonAsync($"/v1/holds/{holdId}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await b.Client.DeleteJsonAsync($"/v1/holds/{holdId}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM requests"));
    }

    [Fact]
    public async Task PlanCreditsDoNotCoverAHoldForAMeterOffThePlan()
    {
        // The reviewer's scenario: 100 plan credits for meter a; meter b is off the plan and the credit limit is 0.
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        var a = await App.MeterAsync(m.MerchantId, "a", "fixed", "requests", (0, 1));
        await App.MeterAsync(m.MerchantId, "b", "fixed", "requests", (0, 30));
        var plan = await App.PlanAsync(m.MerchantId, 100m, 100m, meterIds: [a]);
        await m.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = customer, plan_id = plan.PlanId });

        (await m.Client.PostJsonAsync("/v1/holds", new { customer_id = customer, amount = "30", meter_slug = "b" }))
            .AssertProblem(HttpStatusCode.PaymentRequired, "insufficient_credits");
        Assert.Equal(HttpStatusCode.Created, (await m.Client.PostJsonAsync("/v1/holds", new { customer_id = customer, amount = "30", meter_slug = "a" })).Status);
        (await m.Client.PostJsonAsync("/v1/holds", new { customer_id = customer, amount = "1", meter_slug = "nope" }))
            .AssertProblem(HttpStatusCode.NotFound, "not_found");
    }

    [Theory]
    [InlineData("{\"amount\":\"1\"}", "customer_id")]
    [InlineData("{\"customer_id\":\"c\",\"amount\":\"0\"}", "amount")]
    [InlineData("{\"customer_id\":\"c\",\"amount\":\"-1\"}", "amount")]
    [InlineData("{\"customer_id\":\"c\",\"amount\":\"1\",\"expires_in\":0}", "expires_in")]
    [InlineData("{\"customer_id\":\"c\",\"amount\":\"1\",\"expires_in\":999999}", "expires_in")]
    public async Task BadHoldInputIsA400(string json, string field)
    {
        var (m, _) = await ArrangeAsync();
        var body = (await m.Client.PostJsonAsync("/v1/holds", Http.Json(json))).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.True(body["errors"]!.AsObject().ContainsKey(field));
    }
}
