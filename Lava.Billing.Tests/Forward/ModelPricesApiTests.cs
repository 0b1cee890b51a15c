using System.Net;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Forward;

public class ModelPricesApiTests(LavaApp app) : ApiTest(app)
{
    [Fact]
    public async Task EveryMerchantStartsWithTheSeededDefaults()
    {
        var m = await App.NewMerchantAsync();

        var r = await m.Client.GetJsonAsync("/v1/model_prices?limit=100");

        Assert.Equal(HttpStatusCode.OK, r.Status);
        var gpt4o = r.Body!["data"]!.AsArray().Single(p => (string)p!["model"]! == "gpt-4o")!;
        Assert.Equal(("2.5000000000", "1.2500000000", "10.0000000000", "default", 1, "openai"),
            ((string)gpt4o["input"]!, (string)gpt4o["cached_input"]!, (string)gpt4o["output"]!, (string)gpt4o["source"]!, (int)gpt4o["version"]!, (string)gpt4o["owned_by"]!));
        Assert.False((bool)r.Body["has_more"]!);
    }

    [Fact]
    public async Task PricingAModelMakesANewVersionThatWinsForThatMerchantOnly()
    {
        var m = await App.NewMerchantAsync();
        var other = await App.NewMerchantAsync();

        var first = await m.Client.PostJsonAsync("/v1/model_prices", new { model = "gpt-4o", input = "2", output = 8 });
        var second = await m.Client.PostJsonAsync("/v1/model_prices", new { model = "gpt-4o", input = "1.5", cached_input = "0.5", output = "6" });

        Assert.Equal(HttpStatusCode.Created, first.Status);
        Assert.Equal((1, "2.0000000000", "openai", "merchant"), ((int)first.Body!["version"]!, (string)first.Body["cached_input"]!, (string)first.Body["owned_by"]!, (string)first.Body["source"]!));
        Assert.Equal((2, "0.5000000000"), ((int)second.Body!["version"]!, (string)second.Body["cached_input"]!));
        var mine = (await m.Client.GetJsonAsync("/v1/model_prices?limit=100")).Body!["data"]!.AsArray().Single(p => (string)p!["model"]! == "gpt-4o")!;
        var theirs = (await other.Client.GetJsonAsync("/v1/model_prices?limit=100")).Body!["data"]!.AsArray().Single(p => (string)p!["model"]! == "gpt-4o")!;
        Assert.Equal(("1.5000000000", 2), ((string)mine["input"]!, (int)mine["version"]!));
        Assert.Equal(("2.5000000000", "default"), ((string)theirs["input"]!, (string)theirs["source"]!));
    }

    [Fact]
    public async Task ConcurrentPricesOfOneModelGetDistinctVersions()
    {
        var m = await App.NewMerchantAsync();
        var results = await Task.WhenAll(Enumerable.Range(0, 6).Select(i =>
            m.Client.PostJsonAsync("/v1/model_prices", new { model = "my-model", owned_by = "me", input = i.ToString(), output = "1" })));
        Assert.All(results, r => Assert.Equal(HttpStatusCode.Created, r.Status));
        Assert.Equal([1, 2, 3, 4, 5, 6], results.Select(r => (int)r.Body!["version"]!).Order());
    }

    [Fact]
    public async Task ModelsListsThePricedModelsOpenAiStyle()
    {
        var m = await App.NewMerchantAsync();
        await m.Client.PostJsonAsync("/v1/model_prices", new { model = "acme/llama-70b", owned_by = "acme", input = "0.9", output = "0.9" });

        var r = await m.Client.GetJsonAsync("/v1/models");

        Assert.Equal("list", (string)r.Body!["object"]!);
        var data = r.Body["data"]!.AsArray();
        Assert.Contains(data, d => (string)d!["id"]! == "claude-sonnet-4-5" && (string)d["owned_by"]! == "anthropic");
        var mine = data.Single(d => (string)d!["id"]! == "acme/llama-70b")!;
        Assert.Equal(("model", "acme"), ((string)mine["object"]!, (string)mine["owned_by"]!));
        Assert.True((long)mine["created"]! > 1_700_000_000);
    }

    [Fact]
    public async Task ThePriceListPagesByModel()
    {
        var m = await App.NewMerchantAsync();
        var page1 = await m.Client.GetJsonAsync("/v1/model_prices?limit=5");
        var page2 = await m.Client.GetJsonAsync("/v1/model_prices?limit=5&cursor=" + (string)page1.Body!["next_cursor"]!);
        var models = page1.Body["data"]!.AsArray().Concat(page2.Body!["data"]!.AsArray()).Select(p => (string)p!["model"]!).ToList();
        Assert.Equal(10, models.Distinct().Count());
        Assert.Equal(models.Order(StringComparer.Ordinal), models);
    }

    [Theory]
    [InlineData("""{"input":"1","output":"1"}""", "model")]
    [InlineData("""{"model":"has space","input":"1","output":"1"}""", "model")]
    [InlineData("""{"model":"m","output":"1"}""", "input")]
    [InlineData("""{"model":"m","input":"-1","output":"1"}""", "input")]
    [InlineData("""{"model":"m","input":"0.00001","output":"1"}""", "input")]
    [InlineData("""{"model":"m","input":"1","output":"1","per_minute":"2000000"}""", "per_minute")]
    [InlineData("""{"model":"m","input":"abc","output":"1"}""", "input")]
    public async Task BadPricesAreRefusedAndChangeNothing(string body, string field)
    {
        var m = await App.NewMerchantAsync();
        var r = await m.Client.PostJsonAsync("/v1/model_prices", Http.Json(body));
        Assert.Equal(HttpStatusCode.BadRequest, r.Status);
        Assert.NotNull(r.Body!["errors"]![field]);
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM model_prices WHERE merchant_id = @m", new { m = m.MerchantId }));
    }

    [Fact]
    public async Task AReadOnlyKeyCannotPriceAModel()
    {
        var m = await App.NewMerchantAsync();
        var readOnly = await m.Client.PostJsonAsync("/v1/secret_keys", new { name = "ro", scope = "read_only" });
        var client = App.ClientWithKey((string)readOnly.Body!["secret_key"]!);
        (await client.PostJsonAsync("/v1/model_prices", new { model = "m", input = "1", output = "1" })).AssertProblem(HttpStatusCode.Forbidden, "read_only_key");
        Assert.Equal(HttpStatusCode.OK, (await client.GetJsonAsync("/v1/models")).Status);
    }
}
