using System.Net;
using System.Text.Json.Nodes;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Webhooks;

/// <summary>/v1/webhooks as the SDK calls it, with the service's default settings (no private addresses).</summary>
public class WebhooksApiTests(LavaApp app) : ApiTest(app)
{
    [Fact]
    public async Task AWebhookIsCreatedWithItsSecretOnceThenListedRetrievedUpdatedAndDeleted()
    {
        var m = await App.NewMerchantAsync();
        var created = await m.Client.PostJsonAsync("/v1/webhooks", new { name = "orders", url = "https://hooks.example.com/lava" });
        Assert.Equal(HttpStatusCode.Created, created.Status);
        var id = (string)created.Body!["webhook_id"]!;
        var secret = (string)created.Body["webhook_secret"]!;
        Assert.StartsWith("whsec_", secret);
        Assert.Equal(32, Convert.FromBase64String(secret["whsec_".Length..]).Length);
        Assert.Equal("enabled", (string)created.Body["status"]!);
        Assert.Null(created.Body["event_types"]);

        var retrieved = await m.Client.GetJsonAsync($"/v1/webhooks/{id}");
        Assert.Equal("https://hooks.example.com/lava", (string)retrieved.Body!["url"]!);
        Assert.Null(retrieved.Body["webhook_secret"]);

        var list = await m.Client.GetJsonAsync("/v1/webhooks?limit=10");
        Assert.Equal([id], list.Body!["data"]!.AsArray().Select(w => (string)w!["webhook_id"]!));
        Assert.False((bool)list.Body["has_more"]!);

        var updated = await m.Client.PatchJsonAsync($"/v1/webhooks/{id}", new { url = "https://hooks.example.com/v2", event_types = new[] { "customer.created" } });
        Assert.Equal(HttpStatusCode.OK, updated.Status);
        Assert.Equal("orders", (string)updated.Body!["name"]!);
        Assert.Equal("https://hooks.example.com/v2", (string)updated.Body["url"]!);
        Assert.Equal("customer.created", (string)updated.Body["event_types"]![0]!);

        var deleted = await m.Client.DeleteJsonAsync($"/v1/webhooks/{id}");
        Assert.Equal(id, (string)deleted.Body!["id"]!);
        Assert.True((bool)deleted.Body["deleted"]!);
        (await m.Client.GetJsonAsync($"/v1/webhooks/{id}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.DeleteJsonAsync($"/v1/webhooks/{id}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task TheWebhookListPagesWithACursor()
    {
        var m = await App.NewMerchantAsync();
        var ids = new List<string>();
        for (var i = 0; i < 3; i++)
            ids.Add((string)(await m.Client.PostJsonAsync("/v1/webhooks", new { name = $"w{i}", url = "https://hooks.example.com/" + i })).Body!["webhook_id"]!);
        var first = await m.Client.GetJsonAsync("/v1/webhooks?limit=2");
        Assert.True((bool)first.Body!["has_more"]!);
        var second = await m.Client.GetJsonAsync($"/v1/webhooks?limit=2&cursor={(string)first.Body["next_cursor"]!}");
        Assert.Equal(ids, first.Body["data"]!.AsArray().Concat(second.Body!["data"]!.AsArray()).Select(w => (string)w!["webhook_id"]!));
    }

    [Theory]
    [InlineData("ftp://hooks.example.com/x", "must be an absolute http or https URL")]
    [InlineData("/relative", "must be an absolute http or https URL")]
    [InlineData("http://127.0.0.1:8080/x", "must not point at a loopback, private or link-local address")]
    [InlineData("http://localhost/x", "must not point at a loopback, private or link-local address")]
    [InlineData("http://10.1.2.3/x", "must not point at a loopback, private or link-local address")]
    [InlineData("http://169.254.169.254/latest/meta-data", "must not point at a loopback, private or link-local address")]
    [InlineData("http://[::1]/x", "must not point at a loopback, private or link-local address")]
    [InlineData("https://user:pw@hooks.example.com/x", "must not carry credentials")]
    public async Task AUrlThatIsNotPublicHttpIsRefused(string url, string message)
    {
        var m = await App.NewMerchantAsync();
        var r = await m.Client.PostJsonAsync("/v1/webhooks", new { name = "w", url });
        var problem = r.AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.Equal(message, (string)problem["errors"]!["url"]![0]!);
    }

    [Fact]
    public async Task MissingFieldsUnknownEventTypesAndBadStatusAreRefused()
    {
        var m = await App.NewMerchantAsync();
        var missing = (await m.Client.PostJsonAsync("/v1/webhooks", new { })).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.NotNull(missing["errors"]!["name"]);
        Assert.NotNull(missing["errors"]!["url"]);
        var types = (await m.Client.PostJsonAsync("/v1/webhooks", new { name = "w", url = "https://h.example.com", event_types = new[] { "nope" } }))
            .AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.NotNull(types["errors"]!["event_types"]);
        var id = (string)(await m.Client.PostJsonAsync("/v1/webhooks", new { name = "w", url = "https://h.example.com" })).Body!["webhook_id"]!;
        (await m.Client.PatchJsonAsync($"/v1/webhooks/{id}", new { status = "paused" })).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        (await m.Client.PatchJsonAsync($"/v1/webhooks/{id}", new { url = "http://192.168.0.1/" })).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
    }

    [Fact]
    public async Task AnotherMerchantsWebhookIsNotFound()
    {
        var owner = await App.NewMerchantAsync("owner");
        var other = await App.NewMerchantAsync("other");
        var id = (string)(await owner.Client.PostJsonAsync("/v1/webhooks", new { name = "w", url = "https://h.example.com" })).Body!["webhook_id"]!;
        (await other.Client.GetJsonAsync($"/v1/webhooks/{id}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await other.Client.PatchJsonAsync($"/v1/webhooks/{id}", new { name = "x" })).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await other.Client.DeleteJsonAsync($"/v1/webhooks/{id}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await other.Client.GetJsonAsync($"/v1/webhooks/{id}/deliveries")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        Assert.Empty((await other.Client.GetJsonAsync("/v1/webhooks")).Body!["data"]!.AsArray());
    }

    [Fact]
    public async Task AMerchantWithoutAWebhookRecordsNoEvents()
    {
        var m = await App.NewMerchantAsync();
        await m.Client.PostJsonAsync("/v1/customers", new { name = "Ada" });
        Assert.Equal(0L, await App.QueryAsync<long>("SELECT count(*) FROM webhook_events WHERE merchant_id = @m", new { m = m.MerchantId }));
    }
}
