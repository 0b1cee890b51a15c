using System.Net;
using Dapper;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Infrastructure;
using Npgsql;

namespace Lava.Billing.Tests.Forward;

/// <summary>A customer who cannot pay is refused before the provider is called; what is held is captured or released.</summary>
public class GatewayBillingTests(GatewayApp app) : GatewayTest<GatewayApp>(app)
{
    private static HttpContent Chat(int? maxTokens = null) =>
        Http.Json(maxTokens is null
            ? new { model = "gpt-4o", messages = new[] { new { role = "user", content = "Say hello" } } }
            : (object)new { model = "gpt-4o", max_tokens = maxTokens, messages = new[] { new { role = "user", content = "Say hello" } } });

    private async Task<(LavaApp.Merchant M, string Customer)> ArrangeAsync(decimal credits, string tierType = "tokens_1m", decimal rate = 5m)
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "chat", "fixed", tierType, (0, rate));
        if (credits > 0) await App.GrantAsync(m.MerchantId, customer, credits);
        return (m, customer);
    }

    private Task<long> CountAsync(string sql, string merchantId) => App.QueryAsync<long>(sql, new { m = merchantId });

    [Fact]
    public async Task ACustomerWhoCannotCoverTheWorstCaseIsRefusedWith402AndTheProviderIsNeverCalled()
    {
        var (m, customer) = await ArrangeAsync(credits: 0);
        var client = App.ClientWithToken(m.SecretKey, customer, "chat");

        var r = await client.SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), Chat(maxTokens: 1000));

        r.AssertProblem(HttpStatusCode.PaymentRequired, "insufficient_credits");
        Assert.Equal(0, Fake.Calls);
        Assert.Equal(0, Fake.Connections);
        Assert.Equal(0, await CountAsync("SELECT count(*) FROM requests WHERE merchant_id = @m", m.MerchantId));
        Assert.Equal(0, await CountAsync("SELECT count(*) FROM holds WHERE merchant_id = @m", m.MerchantId));
    }

    [Fact]
    public async Task TheWorstCaseIsHeldAndTheReportCapturesItForTheRealCharge()
    {
        var (m, customer) = await ArrangeAsync(credits: 1m);
        var client = App.ClientWithToken(m.SecretKey, customer, "chat");

        var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat(maxTokens: 1000));

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var requestId = r.Headers.GetValues("x-lava-request-id").Single();
        var (status, amount, captured, holdRequest) = await App.QueryAsync<(string, decimal, decimal, string)>(
            "SELECT status, amount, captured_amount, request_id FROM holds WHERE merchant_id = @m", new { m = m.MerchantId });
        Assert.Equal(("captured", requestId), (status, holdRequest));
        // Real usage: 1,200 prompt + 300 output tokens at 5 per 1M = 0.0075, all posted. The hold guaranteed what it
        // covered (the prompt estimate + max_tokens); the capture records that part.
        Assert.Equal(0.0075m, await App.QueryAsync<decimal>("SELECT charge_amount FROM requests WHERE request_id = @requestId", new { requestId }));
        Assert.Equal(Math.Min(amount, 0.0075m), captured);
        var balance = await m.Client.GetJsonAsync($"/v1/customers/{customer}/balance");
        Assert.Equal("0.9925000000", (string)balance.Body!["available"]!);
        Assert.Equal("0.0000000000", (string)balance.Body["held"]!);
    }

    [Fact]
    public async Task AProviderFailureReleasesTheHoldAndChargesNothing()
    {
        var (m, customer) = await ArrangeAsync(credits: 1m);
        Fake.Next.Enqueue(http => FakeProvider.Json(http, """{"error":{"message":"boom"}}""", 500));
        var client = App.ClientWithToken(m.SecretKey, customer, "chat");

        var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat(maxTokens: 1000));

        Assert.Equal(HttpStatusCode.InternalServerError, r.StatusCode);
        Assert.Equal("voided", await App.QueryAsync<string>("SELECT status FROM holds WHERE merchant_id = @m", new { m = m.MerchantId }));
        Assert.Equal(0, await CountAsync("SELECT count(*) FROM requests WHERE merchant_id = @m", m.MerchantId));
        Assert.Equal("1.0000000000", (string)(await m.Client.GetJsonAsync($"/v1/customers/{customer}/balance")).Body!["available"]!);
    }

    [Fact]
    public async Task ConcurrentCallsAgainstASmallBalanceNeverOverspendIt()
    {
        // One credit a call, three credits: of ten racing calls exactly three reach the provider.
        var (m, customer) = await ArrangeAsync(credits: 3m, tierType: "requests", rate: 1m);
        var clients = Enumerable.Range(0, 10).Select(_ => App.ClientWithToken(m.SecretKey, customer, "chat")).ToList();

        var results = await Task.WhenAll(clients.Select(c => c.PostAsync(App.Forward("/v1/chat/completions"), Chat())));

        Assert.Equal(3, results.Count(r => r.StatusCode == HttpStatusCode.OK));
        Assert.Equal(7, results.Count(r => r.StatusCode == HttpStatusCode.PaymentRequired));
        Assert.Equal(3, Fake.Calls);
        Assert.Equal(0m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.CreditsCycle(customer)));
        Assert.Equal(0m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(customer)));
    }

    [Fact]
    public async Task ABillingDisabledCallForAMeterOffThePlanIsRefusedBeforeTheProvider()
    {
        var (m, customer) = await ArrangeAsync(credits: 0);
        var client = App.ClientWithToken(m.SecretKey, customer, "chat", disableBilling: true);

        var r = await client.SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), Chat());

        r.AssertProblem(HttpStatusCode.Forbidden, "meter_not_on_plan");
        Assert.Equal(0, Fake.Calls);
    }

    [Fact]
    public async Task PlanCreditsDoNotLetAMeterOffThePlanReachTheProvider()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        var onPlan = await App.MeterAsync(m.MerchantId, "included", "fixed", "requests", (0, 1));
        await App.MeterAsync(m.MerchantId, "chat", "fixed", "requests", (0, 1));
        var plan = await App.PlanAsync(m.MerchantId, 50m, 50m, meterIds: [onPlan]);
        await m.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = customer, plan_id = plan.PlanId });

        var r = await App.ClientWithToken(m.SecretKey, customer, "chat").SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), Chat());

        r.AssertProblem(HttpStatusCode.PaymentRequired, "insufficient_credits");
        Assert.Equal(0, Fake.Calls);
        Assert.Equal(HttpStatusCode.OK, (await App.ClientWithToken(m.SecretKey, customer, "included").PostAsync(App.Forward("/v1/chat/completions"), Chat())).StatusCode);
    }

    [Fact]
    public async Task ACreditLimitLetsACustomerRunIntoOverageUpToIt()
    {
        var (m, customer) = await ArrangeAsync(credits: 0, tierType: "requests", rate: 1m);
        await using (var c = new NpgsqlConnection(App.ConnectionString))
            await c.ExecuteAsync("UPDATE customers SET credit_limit = 2 WHERE customer_id = @customer", new { customer });
        var client = App.ClientWithToken(m.SecretKey, customer, "chat");

        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync(App.Forward("/v1/chat/completions"), Chat())).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync(App.Forward("/v1/chat/completions"), Chat())).StatusCode);
        (await client.SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), Chat())).AssertProblem(HttpStatusCode.PaymentRequired, "insufficient_credits");
        Assert.Equal(2m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(customer)));
    }
}
