using System.Net;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Forward;

public class GatewayModeTests(GatewayApp app) : GatewayTest<GatewayApp>(app)
{
    // gpt-4o at the seeded price: 200 uncached × 2.50 + 1,000 cached × 1.25 + 300 output (100 of them reasoning) × 10.00, per 1M.
    private const decimal Gpt4oCost = 0.00475m;

    private static HttpContent Chat(string model = "gpt-4o") =>
        Http.Json(new { model, messages = new[] { new { role = "user", content = "Say hello" } } });

    private Task<(string Mode, string? CustomerId, long InputTokens, long OutputTokens, decimal? Cost, decimal Charge, string Metadata)> ReportAsync(string merchantId, string requestId) =>
        App.QueryAsync<(string, string?, long, long, decimal?, decimal, string)>(
            "SELECT mode, customer_id, input_tokens, output_tokens, cost, charge_amount, metadata::text FROM requests WHERE merchant_id = @m AND request_id = @r",
            new { m = merchantId, r = requestId });

    private static string RequestId(HttpResponseMessage response) => response.Headers.GetValues("x-lava-request-id").Single();

    [Fact]
    public async Task GatewayModeWithABareKeyForwardsTheCallAndRecordsOnlyTheProviderCost()
    {
        var m = await App.NewMerchantAsync();

        var r = await m.Client.PostAsync(App.Forward("/v1/chat/completions"), Chat());

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Contains("Hello world", await r.Content.ReadAsStringAsync());
        Assert.Equal("prov_123", r.Headers.GetValues("x-provider-request-id").Single());
        var requestId = RequestId(r);
        Assert.StartsWith("req_", requestId);
        var upstream = Assert.Single(Fake.Requests);
        Assert.Equal("/v1/chat/completions", upstream.PathAndQuery);
        Assert.Equal("Bearer " + GatewayApp.ManagedKey, upstream.Headers["authorization"]);
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", new { m = m.MerchantId }));
        var (kind, lineage) = await App.QueryAsync<(string, string)>(
            "SELECT kind, lineage::text FROM ledger_transactions WHERE merchant_id = @m AND reference = @r", new { m = m.MerchantId, r = requestId });
        Assert.Equal("gateway", kind);
        Assert.Contains("\"mode\": \"gateway\"", lineage);
        Assert.Equal(Gpt4oCost, await App.EntriesSumAsync(m.MerchantId, LedgerAccounts.ProviderCost));
        Assert.Equal(-Gpt4oCost, await App.EntriesSumAsync(m.MerchantId, LedgerAccounts.ProviderPayable));
        Assert.Equal(0m, await App.EntriesSumAsync(m.MerchantId, LedgerAccounts.UsageRevenue));
    }

    [Fact]
    public async Task ATokenWithNeitherCustomerNorMeterIsGatewayModeToo()
    {
        var m = await App.NewMerchantAsync();
        var client = App.ClientWithToken(m.SecretKey, customerNull: true);

        var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat());

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("gateway", await App.QueryAsync<string>(
            "SELECT kind FROM ledger_transactions WHERE merchant_id = @m AND reference = @r", new { m = m.MerchantId, r = RequestId(r) }));
    }

    [Fact]
    public async Task MeterOnlyModeReportsTheUsageOnTheMeterAndChargesNobody()
    {
        var m = await App.NewMerchantAsync();
        var meterId = await App.MeterAsync(m.MerchantId, "chat", "fixed", "tokens_1m", (0, 5));
        var client = App.ClientWithToken(m.SecretKey, meterSlug: "chat", customerNull: true);

        var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat());

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var report = await ReportAsync(m.MerchantId, RequestId(r));
        Assert.Equal(("meter_only", (string?)null), (report.Mode, report.CustomerId));
        // Cached tokens are input once, reasoning tokens output once: 1,200 + 300, not 2,200 + 400.
        Assert.Equal((FakeProvider.Prompt, FakeProvider.Completion), (report.InputTokens, report.OutputTokens));
        Assert.Equal(Gpt4oCost, report.Cost);
        Assert.Equal(0.0075m, report.Charge);
        Assert.Equal(meterId, await App.QueryAsync<string>("SELECT meter_id FROM requests WHERE merchant_id = @m", new { m = m.MerchantId }));
        Assert.Equal(0m, await App.EntriesSumAsync(m.MerchantId, LedgerAccounts.UsageRevenue));
        Assert.Equal(Gpt4oCost, await App.EntriesSumAsync(m.MerchantId, LedgerAccounts.ProviderCost));
    }

    [Fact]
    public async Task CustomerModeChargesTheCustomerThroughTheReportPath()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "chat", "fixed", "tokens_1m", (0, 5));
        await App.GrantAsync(m.MerchantId, customer, 1m);
        var client = App.ClientWithToken(m.SecretKey, customer, "chat");

        var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat());

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var report = await ReportAsync(m.MerchantId, RequestId(r));
        Assert.Equal(("customer", customer, 0.0075m), (report.Mode, report.CustomerId, report.Charge));
        var stored = (await m.Client.GetJsonAsync($"/v1/requests/{RequestId(r)}")).Body!;
        Assert.Equal(("127.0.0.1", "managed", "gpt-4o", "/v1/chat/completions"),
            ((string)stored["provider"]!, (string)stored["provider_key_type"]!, (string)stored["model"]!, (string)stored["endpoint"]!));
        Assert.Equal(-(1m - 0.0075m), await App.BalanceAsync(m.MerchantId, LedgerAccounts.CreditsCycle(customer)));
        Assert.Equal(-0.0075m, await App.EntriesSumAsync(m.MerchantId, LedgerAccounts.UsageRevenue));
    }

    [Fact]
    public async Task BillingDisabledModeChargesNothingAndRecordsTheCustomersUsage()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        var meterId = await App.MeterAsync(m.MerchantId, "chat", "fixed", "tokens_1m", (0, 5));
        var plan = await App.PlanAsync(m.MerchantId, 0m, 0m, meterIds: [meterId]);
        await m.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = customer, plan_id = plan.PlanId });
        var client = App.ClientWithToken(m.SecretKey, customer, "chat", disableBilling: true);

        var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat());

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var report = await ReportAsync(m.MerchantId, RequestId(r));
        Assert.Equal(("billing_disabled", customer, 0m), (report.Mode, report.CustomerId, report.Charge));
        Assert.Equal(FakeProvider.Prompt, report.InputTokens);
        Assert.Equal(0m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(customer)));
        Assert.Equal(0m, await App.EntriesSumAsync(m.MerchantId, LedgerAccounts.UsageRevenue));
        Assert.Equal(Gpt4oCost, await App.EntriesSumAsync(m.MerchantId, LedgerAccounts.ProviderCost));
    }

    [Fact]
    public async Task APercentageMeterChargesItsShareOfTheProviderCost()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "pct", "percentage", "tokens_1m", (0, 20));
        var client = App.ClientWithToken(m.SecretKey, meterSlug: "pct");

        var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat());

        var report = await ReportAsync(m.MerchantId, RequestId(r));
        Assert.Equal((Gpt4oCost, 0.00095m), (report.Cost, report.Charge));
    }

    [Fact]
    public async Task APercentageMeterRefusesAModelWithoutAPriceBeforeTheProviderIsCalled()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "pct", "percentage", "tokens_1m", (0, 20));
        var client = App.ClientWithToken(m.SecretKey, meterSlug: "pct");

        var r = await client.SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), Chat("my-finetune-v1"));

        r.AssertProblem(HttpStatusCode.UnprocessableEntity, "model_price_unknown");
        Assert.Equal(0, Fake.Calls);
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM ledger_transactions WHERE merchant_id = @m", new { m = m.MerchantId }));
    }

    [Fact]
    public async Task AMerchantsOwnModelPriceIsTheOneTheCostUses()
    {
        var m = await App.NewMerchantAsync();
        await m.Client.PostJsonAsync("/v1/model_prices", new { model = "gpt-4o", input = "1", output = "2" });
        var client = App.ClientWithToken(m.SecretKey, meterSlug: "chat");
        await App.MeterAsync(m.MerchantId, "chat", "fixed", "requests", (0, 1));

        var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat());

        // The merchant gave no cached price, so cached tokens cost the input price: (1,200 × 1 + 300 × 2) / 1M.
        Assert.Equal(0.0018m, (await ReportAsync(m.MerchantId, RequestId(r))).Cost);
    }

    [Theory]
    [InlineData(null, "missing-meter")]
    [InlineData("cus_does_not_exist", "chat")]
    public async Task AnUnknownMeterOrCustomerIsRefusedBeforeTheProviderIsCalled(string? customer, string meter)
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "chat", "fixed", "requests", (0, 1));
        var client = App.ClientWithToken(m.SecretKey, customer, meter);

        var r = await client.SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), Chat());

        r.AssertProblem(HttpStatusCode.NotFound, "not_found");
        Assert.Equal(0, Fake.Calls);
    }

    [Fact]
    public async Task AnotherMerchantsMeterIsNotFound()
    {
        var other = await App.NewMerchantAsync();
        await App.MeterAsync(other.MerchantId, "chat", "fixed", "requests", (0, 1));
        var m = await App.NewMerchantAsync();

        var r = await App.ClientWithToken(m.SecretKey, meterSlug: "chat").SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), Chat());

        r.AssertProblem(HttpStatusCode.NotFound, "not_found");
        Assert.Equal(0, Fake.Calls);
    }

    [Fact]
    public async Task ACustomerWithoutAMeterIsABadToken()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        var r = await App.ClientWithToken(m.SecretKey, customer).SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), Chat());
        r.AssertProblem(HttpStatusCode.BadRequest, "invalid_forward_token");
        Assert.Equal(0, Fake.Calls);
    }

    [Fact]
    public async Task MetadataFromTheHeaderIsStoredOnTheRequest()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "chat", "fixed", "requests", (0, 1));
        var client = App.ClientWithToken(m.SecretKey, meterSlug: "chat");
        var request = new HttpRequestMessage(HttpMethod.Post, App.Forward("/v1/chat/completions")) { Content = Chat() };
        request.Headers.Add("x-lava-metadata", """{"team":"search","run":"42"}""");

        var r = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("""{"run": "42", "team": "search"}""", (await ReportAsync(m.MerchantId, RequestId(r))).Metadata);
        Assert.DoesNotContain("x-lava-metadata", Assert.Single(Fake.Requests).Headers.Keys);
    }

    [Theory]
    [InlineData("not json")]
    [InlineData("""["a","b"]""")]
    [InlineData("""{"n":1}""")]
    [InlineData("""{"bad key!":"v"}""")]
    [InlineData("""{"k":""}""")]
    public async Task BadMetadataIsRefusedBeforeTheProviderIsCalled(string header)
    {
        var m = await App.NewMerchantAsync();
        var request = new HttpRequestMessage(HttpMethod.Post, App.Forward("/v1/chat/completions")) { Content = Chat() };
        request.Headers.TryAddWithoutValidation("x-lava-metadata", header);

        var response = await m.Client.SendAsync(request);
        var body = System.Text.Json.Nodes.JsonNode.Parse(await response.Content.ReadAsStringAsync())!;

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("validation_failed", (string)body["error"]!["code"]!);
        Assert.NotNull(body["errors"]!["metadata"]);
        Assert.Equal(0, Fake.Calls);
    }

    [Fact]
    public async Task AReadOnlyKeyCannotSpend()
    {
        var m = await App.NewMerchantAsync();
        var readOnly = await m.Client.PostJsonAsync("/v1/secret_keys", new { name = "ro", scope = "read_only" });
        var client = App.ClientWithKey((string)readOnly.Body!["secret_key"]!);

        (await client.SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), Chat())).AssertProblem(HttpStatusCode.Forbidden, "read_only_key");
        Assert.Equal(0, Fake.Calls);
    }
}
