using System.Net;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Requests;

public class ReportListTests(LavaApp app) : ApiTest(app)
{
    [Fact]
    public async Task AReportCanBeRetrievedByItsRequestIdExactlyAsItWasAnswered()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        var created = await m.Client.PostJsonAsync("/v1/requests", new { request_id = "job/42 a", meter_slug = "gpt" });
        var got = await m.Client.GetJsonAsync("/v1/requests/job/42%20a");
        Assert.Equal(HttpStatusCode.OK, got.Status);
        Assert.Equal(created.Body!.ToJsonString(), got.Body!.ToJsonString());
        (await m.Client.GetJsonAsync("/v1/requests/missing")).AssertProblem(HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task PagesWalkEveryReportOnceNewestFirstWithFilters()
    {
        var m = await App.NewMerchantAsync();
        var a = await App.CustomerAsync(m.MerchantId);
        var b = await App.CustomerAsync(m.MerchantId);
        var meterX = await App.MeterAsync(m.MerchantId, "x", "fixed", "requests", (0, 1));
        await App.MeterAsync(m.MerchantId, "y", "fixed", "requests", (0, 1));
        for (var i = 0; i < 7; i++)
        {
            await m.Client.PostJsonAsync("/v1/requests", new
            {
                request_id = $"r{i}", customer_id = i % 2 == 0 ? a : b, meter_slug = i < 5 ? "x" : "y",
                metadata = new Dictionary<string, string> { ["team"] = i % 3 == 0 ? "core" : "edge", ["n"] = i.ToString() },
            });
        }

        var seen = new List<string>();
        string? cursor = null;
        do
        {
            var page = await m.Client.GetJsonAsync($"/v1/requests?limit=3&customer_id={a}" + (cursor is null ? "" : $"&cursor={cursor}"));
            Assert.Equal(HttpStatusCode.OK, page.Status);
            seen.AddRange(page.Body!["data"]!.AsArray().Select(d => (string)d!["request_id"]!));
            cursor = (bool)page.Body["has_more"]! ? (string)page.Body["next_cursor"]! : null;
        } while (cursor is not null);
        Assert.Equal(["r6", "r4", "r2", "r0"], seen);

        var byMeter = await m.Client.GetJsonAsync($"/v1/requests?limit=100&meter_id={meterX}");
        Assert.Equal(5, byMeter.Body!["data"]!.AsArray().Count);

        var filters = Uri.EscapeDataString("[[\"team\",\"core\"],[\"n\",\"3\"]]");
        var byMetadata = await m.Client.GetJsonAsync($"/v1/requests?metadata_filters={filters}");
        Assert.Equal(["r3"], byMetadata.Body!["data"]!.AsArray().Select(d => (string)d!["request_id"]!));
    }

    [Theory]
    [InlineData("limit=0")]
    [InlineData("limit=101")]
    [InlineData("limit=abc")]
    [InlineData("cursor=%%%")]
    [InlineData("metadata_filters=%7Bnot-json")]
    [InlineData("metadata_filters=%5B%5B%22k%22%5D%5D")]
    public async Task BadListParametersAreA400(string query)
    {
        var m = await App.NewMerchantAsync();
        (await m.Client.GetJsonAsync("/v1/requests?" + query)).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
    }
}
