using System.Net;
using System.Text.Json.Nodes;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Meters;

/// <summary>Bad input, one test per class of mistake; none of them may leave a meter behind.</summary>
public class MeterInputTests(LavaApp app) : ApiTest(app)
{
    private async Task<JsonNode> CreateRefusedAsync(LavaApp.Merchant m, string json, string code)
    {
        var body = (await m.Client.PostJsonAsync("/v1/meters", Http.Json(json))).AssertProblem(HttpStatusCode.BadRequest, code);
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM meters WHERE merchant_id = @Id", new { Id = m.MerchantId }));
        return body;
    }

    private static string Meter(string tiers, string rateType = "fixed") =>
        $$"""{"name":"Tokens","rate_type":"{{rateType}}","tier_type":"tokens_1m","tiers":{{tiers}}}""";

    private static IEnumerable<string> TierErrors(JsonNode body) => body["errors"]!["tiers"]!.AsArray().Select(e => (string)e!);

    [Fact]
    public async Task AMeterWithoutANameIsRefused()
    {
        var m = await App.NewMerchantAsync();
        var body = await CreateRefusedAsync(m, """{"rate_type":"fixed","tier_type":"tokens_1m","tiers":[{"start":"0","rate":"1"}]}""", "validation_failed");
        Assert.NotNull(body["errors"]!["name"]);
    }

    [Fact]
    public async Task TiersThatAreNotAnArrayAreRefusedNamingTheField()
    {
        var m = await App.NewMerchantAsync();
        var body = await CreateRefusedAsync(m, Meter("\"x\""), "invalid_json");
        Assert.NotNull(body["errors"]!["tiers"]);
    }

    [Fact]
    public async Task ANegativeRateIsRefused()
    {
        var m = await App.NewMerchantAsync();
        var body = await CreateRefusedAsync(m, Meter("""[{"start":"0","rate":"-0.5"}]"""), "validation_failed");
        Assert.Contains(TierErrors(body), e => e.StartsWith("tiers[0].rate must be >= 0", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("\"1.2.3\"")]
    [InlineData("\"ten\"")]
    [InlineData("\"1e3\"")]
    [InlineData("true")]
    public async Task AMalformedRateIsRefusedNamingTheTierField(string rate)
    {
        var m = await App.NewMerchantAsync();
        var body = await CreateRefusedAsync(m, Meter($$"""[{"start":"0","rate":"1"},{"start":"10","rate":{{rate}}}]"""), "invalid_json");
        Assert.NotNull(body["errors"]!["tiers[1].rate"]);
    }

    [Fact]
    public async Task TiersOutOfOrderAreRefused()
    {
        var m = await App.NewMerchantAsync();
        var body = await CreateRefusedAsync(m, Meter("""[{"start":"0","rate":"3"},{"start":"100","rate":"2"},{"start":"50","rate":"1"}]"""), "validation_failed");
        Assert.Contains("tiers[2].start (50) must be greater than tiers[1].start (100)", TierErrors(body));
    }

    [Fact]
    public async Task AFirstTierThatDoesNotStartAtZeroIsRefused()
    {
        var m = await App.NewMerchantAsync();
        var body = await CreateRefusedAsync(m, Meter("""[{"start":"1","rate":"3"}]"""), "validation_failed");
        Assert.Contains("tiers[0].start must be 0, got 1", TierErrors(body));
    }

    [Fact]
    public async Task NoTiersAtAllAreRefused()
    {
        var m = await App.NewMerchantAsync();
        Assert.Contains("at least one tier is required", TierErrors(await CreateRefusedAsync(m, Meter("[]"), "validation_failed")));
        Assert.NotNull((await CreateRefusedAsync(m, Meter("null"), "validation_failed"))["errors"]!["tiers"]);
        Assert.Contains("tiers[0].rate is required", TierErrors(await CreateRefusedAsync(m, Meter("""[{"start":"0"}]"""), "validation_failed")));
    }

    [Theory]
    [InlineData("1000000.0000000001", "tiers[0].rate must be <= 1000000, got 1000000.0000000001")]
    [InlineData("5000000000", "tiers[0].rate must be <= 1000000000, got 5000000000")]
    public async Task ARateOverTheCapIsRefused(string rate, string message)
    {
        var m = await App.NewMerchantAsync();
        var body = await CreateRefusedAsync(m, Meter($$"""[{"start":"0","rate":"{{rate}}"}]"""), "validation_failed");
        Assert.Equal([message], TierErrors(body));
    }

    [Fact]
    public async Task ARateOfExactlyTheCapIsAccepted()
    {
        var m = await App.NewMerchantAsync();
        var r = await m.Client.PostJsonAsync("/v1/meters", Http.Json(Meter("""[{"start":"0","rate":"1000000"}]""")));
        Assert.Equal(HttpStatusCode.Created, r.Status);
    }

    [Fact]
    public async Task AnUnknownRateTypeOrTierTypeIsRefused()
    {
        var m = await App.NewMerchantAsync();
        var body = await CreateRefusedAsync(m, """{"name":"x","rate_type":"Fixed","tier_type":"tokens","tiers":[{"start":"0","rate":"1"}]}""", "validation_failed");
        Assert.NotNull(body["errors"]!["rate_type"]);
        Assert.NotNull(body["errors"]!["tier_type"]);
    }

    [Theory]
    [InlineData("Upper")]
    [InlineData("-leading-dash")]
    [InlineData("has space")]
    [InlineData("")]
    public async Task AMalformedSlugIsRefused(string slug)
    {
        var m = await App.NewMerchantAsync();
        var body = await CreateRefusedAsync(m, $$"""{"name":"x","meter_slug":"{{slug}}","rate_type":"fixed","tier_type":"requests","tiers":[{"start":"0","rate":"1"}]}""", "validation_failed");
        Assert.NotNull(body["errors"]!["meter_slug"]);
    }

    [Fact]
    public async Task BadTiersInAnUpdateAreRefusedAndMakeNoVersion()
    {
        var m = await App.NewMerchantAsync();
        var meter = await m.Client.CreateMeterAsync("Tokens");
        var id = (string)meter["meter_id"]!;
        var body = (await m.Client.PatchJsonAsync($"/v1/meters/{id}", Http.Json("""{"tiers":[{"start":"0","rate":"-1"}]}""")))
            .AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.NotEmpty(TierErrors(body));
        (await m.Client.PatchJsonAsync($"/v1/meters/{id}", Http.Json("""{"name":""}"""))).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(1, await App.QueryAsync<int>("SELECT current_version FROM meters WHERE meter_id = @Id", new { Id = id }));
    }

    [Fact]
    public async Task AnUnknownMeterIsA404()
    {
        var m = await App.NewMerchantAsync();
        (await m.Client.GetJsonAsync("/v1/meters/mtr_00000000000000000000000000")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.GetJsonAsync("/v1/meters/no-such-slug")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.PatchJsonAsync("/v1/meters/mtr_00000000000000000000000000", new { name = "x" })).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.DeleteJsonAsync("/v1/meters/mtr_00000000000000000000000000")).AssertProblem(HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task AnUnknownMeterIsNamedAsTheSlugOrIdThatWasGiven()
    {
        var m = await App.NewMerchantAsync();
        Assert.Equal("No meter with slug 'nope'.",
            (string)(await m.Client.GetJsonAsync("/v1/meters/nope")).AssertProblem(HttpStatusCode.NotFound, "not_found")["error"]!["message"]!);
        Assert.Equal("No meter with id 'mtr_00000000000000000000000000'.",
            (string)(await m.Client.DeleteJsonAsync("/v1/meters/mtr_00000000000000000000000000")).AssertProblem(HttpStatusCode.NotFound, "not_found")["error"]!["message"]!);
        Assert.Equal("No meter with slug 'nope'.",
            (string)(await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r", meter_slug = "nope" })).AssertProblem(HttpStatusCode.NotFound, "not_found")["error"]!["message"]!);
    }

    [Fact]
    public async Task AnotherMerchantsMeterIsA404ToRetrieveUpdateOrDelete()
    {
        var a = await App.NewMerchantAsync("A");
        var b = await App.NewMerchantAsync("B");
        var meter = await a.Client.CreateMeterAsync("A's meter", "a-meter");
        var id = (string)meter["meter_id"]!;

        foreach (var key in new[] { id, "a-meter" })
        {
            (await b.Client.GetJsonAsync($"/v1/meters/{key}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
            (await b.Client.PatchJsonAsync($"/v1/meters/{key}", new { name = "stolen", tiers = MeterApi.Tiers(("0", "0")) }))
                .AssertProblem(HttpStatusCode.NotFound, "not_found");
            (await b.Client.DeleteJsonAsync($"/v1/meters/{key}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        }
        Assert.Empty((await b.Client.GetJsonAsync("/v1/meters")).Body!["data"]!.AsArray());

        var unchanged = await a.Client.GetJsonAsync($"/v1/meters/{id}");
        Assert.Equal(meter.ToJsonString(), unchanged.Body!.ToJsonString());
    }

    [Fact]
    public async Task ABadLimitOrCursorIsRefused()
    {
        var m = await App.NewMerchantAsync();
        (await m.Client.GetJsonAsync("/v1/meters?limit=101")).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        (await m.Client.GetJsonAsync("/v1/meters?cursor=!!!")).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
    }
}
