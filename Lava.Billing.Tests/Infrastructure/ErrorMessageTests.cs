using System.Net;
using System.Text.Json.Nodes;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>
/// The Node SDK shows only <c>error.message</c>; a validation problem must say there which fields to fix and how, while
/// <c>errors</c> keeps the same messages per field for programs.
/// </summary>
public class ErrorMessageTests(LavaApp app) : ApiTest(app)
{
    private static string Message(JsonNode body) => (string)body["error"]!["message"]!;

    [Fact]
    public async Task ANegativeTokenCountIsNamedWithItsBoundInTheMessage()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "tokens_1m", (0, 5));
        var body = (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r", meter_slug = "gpt", input_tokens = -1 }))
            .AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal("input_tokens: must be between 0 and 10^12 (you sent -1)", Message(body));
        Assert.Equal(Message(body), (string)body["detail"]!);
        Assert.Equal("must be between 0 and 10^12 (you sent -1)", (string)body["errors"]!["input_tokens"]![0]!);
    }

    [Fact]
    public async Task SeveralBadFieldsAreJoinedWithSemicolons()
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.PostJsonAsync("/v1/requests", new { output_tokens = -5, timestamp = "2999-01-01T00:00:00Z" }))
            .AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        var message = Message(body);
        Assert.Contains("request_id: must not be empty", message);
        Assert.Contains("meter_slug: must not be empty", message);
        Assert.Contains("output_tokens: must be between 0 and 10^12 (you sent -5)", message);
        Assert.Contains("timestamp: must not be more than 5 minutes in the future", message);
        Assert.Equal(4, message.Split("; ").Length);
    }

    [Fact]
    public async Task AListLimitOutOfRangeSaysTheRange()
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.GetJsonAsync("/v1/customers?limit=1000")).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal("limit: must be an integer from 1 to 100", Message(body));
    }

    [Fact]
    public async Task BadTiersAreDescribedInTheMessage()
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.PostJsonAsync("/v1/meters", new
        {
            name = "GPT", rate_type = "fixed", tier_type = "tokens_1m",
            tiers = new[] { new { start = 5, rate = "1" } },
        })).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.StartsWith("tiers", Message(body));
        Assert.DoesNotContain("One or more fields", Message(body));
    }

    [Fact]
    public async Task APercentageMeterWithoutCostSaysCostIsRequired()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "resale", "percentage", "requests", (0, 20));
        var body = (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r", meter_slug = "resale" }))
            .AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal("cost: is required: meter 'resale' charges a percentage of the provider cost", Message(body));
    }
}
