using System.Net;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Requests;

/// <summary>Every class of bad input gets a clear problem and changes nothing.</summary>
public class ReportValidationTests(LavaApp app) : ApiTest(app)
{
    private async Task<(LavaApp.Merchant M, string Customer)> ArrangeAsync()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "tokens_1m", (0, 5));
        return (m, customer);
    }

    private async Task AssertNothingStoredAsync() =>
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM requests") + await App.QueryAsync<long>("SELECT count(*) FROM entries"));

    [Theory]
    [InlineData("{\"meter_slug\":\"gpt\"}", "request_id")]
    [InlineData("{\"request_id\":\"r\"}", "meter_slug")]
    [InlineData("{\"request_id\":\"r\",\"meter_slug\":\"gpt\",\"input_tokens\":-1}", "input_tokens")]
    [InlineData("{\"request_id\":\"r\",\"meter_slug\":\"gpt\",\"output_tokens\":1000000000001}", "output_tokens")]
    [InlineData("{\"request_id\":\"r\",\"meter_slug\":\"gpt\",\"input_seconds\":-0.5}", "input_seconds")]
    [InlineData("{\"request_id\":\"r\",\"meter_slug\":\"gpt\",\"input_seconds\":1.0000001}", "input_seconds")]
    [InlineData("{\"request_id\":\"r\",\"meter_slug\":\"gpt\",\"cost\":\"-1\"}", "cost")]
    [InlineData("{\"request_id\":\"r\",\"meter_slug\":\"gpt\",\"metadata\":{\"bad key\":\"v\"}}", "metadata")]
    [InlineData("{\"request_id\":\"r\",\"meter_slug\":\"gpt\",\"metadata\":{\"k\":\"\"}}", "metadata")]
    [InlineData("{\"request_id\":\"r\\u00e9\",\"meter_slug\":\"gpt\"}", "request_id")]
    [InlineData("{\"request_id\":\"r\",\"meter_slug\":\"gpt\",\"timestamp\":\"2999-01-01T00:00:00Z\"}", "timestamp")]
    public async Task AnInvalidFieldIsA400NamingIt(string json, string field)
    {
        var (m, _) = await ArrangeAsync();
        var body = (await m.Client.PostJsonAsync("/v1/requests", Http.Json(json))).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.True(body["errors"]!.AsObject().ContainsKey(field), $"{field} not in {body["errors"]!.ToJsonString()}");
        await AssertNothingStoredAsync();
    }

    [Theory]
    [InlineData("{\"request_id\":\"r\",\"meter_slug\":\"gpt\",\"input_tokens\":1.5}", "input_tokens")]
    [InlineData("{\"request_id\":\"r\",\"meter_slug\":\"gpt\",\"input_tokens\":\"12\"}", "input_tokens")]
    [InlineData("{\"request_id\":\"r\",\"meter_slug\":\"gpt\",\"input_tokens\":1e30}", "input_tokens")]
    [InlineData("{\"request_id\":\"r\",\"meter_slug\":\"gpt\",\"cost\":\"abc\"}", "cost")]
    [InlineData("{\"request_id\":\"r\",\"meter_slug\":\"gpt\",\"metadata\":{\"k\":1}}", "metadata.k")]
    [InlineData("{\"request_id\":42,\"meter_slug\":\"gpt\"}", "request_id")]
    public async Task AWrongTypeIsA400NamingTheField(string json, string field)
    {
        var (m, _) = await ArrangeAsync();
        var body = (await m.Client.PostJsonAsync("/v1/requests", Http.Json(json))).AssertProblem(HttpStatusCode.BadRequest, "invalid_json");
        Assert.True(body["errors"]!.AsObject().ContainsKey(field), $"{field} not in {body["errors"]!.ToJsonString()}");
        await AssertNothingStoredAsync();
    }

    [Fact]
    public async Task MoreThanAHundredMetadataPairsAreRefused()
    {
        var (m, c) = await ArrangeAsync();
        var metadata = Enumerable.Range(0, 101).ToDictionary(i => $"k{i}", _ => "v");
        (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r", customer_id = c, meter_slug = "gpt", metadata }))
            .AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        await AssertNothingStoredAsync();
    }

    [Fact]
    public async Task AnUnknownMeterIs404()
    {
        var (m, c) = await ArrangeAsync();
        (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r", customer_id = c, meter_slug = "nope" })).AssertProblem(HttpStatusCode.NotFound, "not_found");
        await AssertNothingStoredAsync();
    }

    [Fact]
    public async Task AnUnknownCustomerIs404()
    {
        var (m, _) = await ArrangeAsync();
        (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r", customer_id = "cus_nope", meter_slug = "gpt" })).AssertProblem(HttpStatusCode.NotFound, "not_found");
        await AssertNothingStoredAsync();
    }

    [Fact]
    public async Task AnotherMerchantsCustomerAndMeterAre404()
    {
        var (a, customerOfA) = await ArrangeAsync();
        var b = await App.NewMerchantAsync();
        await App.MeterAsync(b.MerchantId, "mine", "fixed", "requests", (0, 1));
        (await b.Client.PostJsonAsync("/v1/requests", new { request_id = "r", customer_id = customerOfA, meter_slug = "mine" })).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await b.Client.PostJsonAsync("/v1/requests", new { request_id = "r", meter_slug = "gpt" })).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await b.Client.GetJsonAsync("/v1/requests/r")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        await AssertNothingStoredAsync();
        _ = a;
    }
}
