using System.Net;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.SpendKeys;

public class SpendKeysApiTests(LavaApp app) : ApiTest(app)
{
    private static readonly object FullKey = new
    {
        name = "cursor",
        request_shape = "anthropic",
        allowed_models = new[] { "claude-sonnet-4-5" },
        allowed_providers = new[] { "anthropic" },
        spend_limit = new { amount = "25.50", cycle = "monthly" },
        request_limit = new { count = 1000, cycle = "daily" },
        rate_limit = new { rpm = 60, burst = 10 },
        expires_at = "2030-01-01T00:00:00Z",
    };

    [Fact]
    public async Task ACreatedSpendKeyShowsItsKeyOnceAndEchoesItsLimits()
    {
        var m = await App.NewMerchantAsync();
        var created = await m.Client.PostJsonAsync("/v1/spend_keys", FullKey);
        Assert.Equal(HttpStatusCode.Created, created.Status);
        var key = (string)created.Body!["key"]!;
        Assert.StartsWith("lava_sk_", key);
        Assert.Equal("lava_sk_..." + key[^4..], (string)created.Body["key_preview"]!);
        Assert.Equal("active", (string)created.Body["status"]!);
        Assert.Equal("anthropic", (string)created.Body["request_shape"]!);
        Assert.Equal(m.MerchantId, (string)created.Body["wallet_id"]!);
        Assert.Equal("25.5000000000", (string)created.Body["spend_limit"]!["amount"]!);
        Assert.Equal("monthly", (string)created.Body["spend_limit"]!["cycle"]!);
        Assert.Equal(1000, (long)created.Body["request_limit"]!["count"]!);
        Assert.Equal(10, (int)created.Body["rate_limit"]!["burst"]!);
        Assert.Equal("0.0000000000", (string)created.Body["current_spend"]!);
        Assert.Equal(0, (long)created.Body["total_requests"]!);

        var id = (string)created.Body["spend_key_id"]!;
        var read = await m.Client.GetJsonAsync($"/v1/spend_keys/{id}");
        Assert.Equal(HttpStatusCode.OK, read.Status);
        Assert.Null(read.Body!["key"]);
        Assert.Equal(created.Body["allowed_models"]!.ToJsonString(), read.Body["allowed_models"]!.ToJsonString());
    }

    [Fact]
    public async Task AMinimalSpendKeyDefaultsToAnActiveOpenAiKeyWithoutLimits()
    {
        var m = await App.NewMerchantAsync();
        var created = await m.Client.PostJsonAsync("/v1/spend_keys", new { name = "bare" });
        Assert.Equal(HttpStatusCode.Created, created.Status);
        Assert.Equal("openai", (string)created.Body!["request_shape"]!);
        foreach (var field in new[] { "spend_limit", "request_limit", "rate_limit", "allowed_models", "allowed_providers", "expires_at", "last_used_at" })
            Assert.Null(created.Body[field]);
    }

    [Fact]
    public async Task OnlyTheHashOfASpendKeyIsStored()
    {
        var m = await App.NewMerchantAsync();
        var key = (string)(await m.Client.PostJsonAsync("/v1/spend_keys", new { name = "h" })).Body!["key"]!;
        var dump = await App.QueryAsync<string>("SELECT string_agg(t::text, ',') FROM spend_keys t WHERE merchant_id = @Id", new { Id = m.MerchantId });
        Assert.DoesNotContain(key["lava_sk_".Length..], dump);
    }

    [Fact]
    public async Task ListingPagesThroughTheMerchantsOwnLiveKeysOnly()
    {
        var m = await App.NewMerchantAsync();
        var other = await App.NewMerchantAsync();
        await other.Client.PostJsonAsync("/v1/spend_keys", new { name = "theirs" });
        var ids = new List<string>();
        for (var i = 0; i < 3; i++) ids.Add((string)(await m.Client.PostJsonAsync("/v1/spend_keys", new { name = $"k{i}" })).Body!["spend_key_id"]!);
        await m.Client.DeleteJsonAsync($"/v1/spend_keys/{ids[1]}");

        var first = await m.Client.GetJsonAsync("/v1/spend_keys?limit=1");
        Assert.True((bool)first.Body!["has_more"]!);
        var second = await m.Client.GetJsonAsync($"/v1/spend_keys?limit=5&cursor={first.Body["next_cursor"]}");
        Assert.False((bool)second.Body!["has_more"]!);
        var seen = first.Body["data"]!.AsArray().Concat(second.Body["data"]!.AsArray()).Select(k => (string)k!["spend_key_id"]!).ToList();
        Assert.Equal([ids[0], ids[2]], seen);
    }

    [Fact]
    public async Task UpdatingChangesOnlyTheMembersSentAndNullClearsALimit()
    {
        var m = await App.NewMerchantAsync();
        var id = (string)(await m.Client.PostJsonAsync("/v1/spend_keys", FullKey)).Body!["spend_key_id"]!;
        var updated = await m.Client.SendAsync(HttpMethod.Put, $"/v1/spend_keys/{id}",
            new { status = "paused", spend_limit = (object?)null, request_limit = new { count = 5, cycle = "total" } });
        Assert.Equal(HttpStatusCode.OK, updated.Status);
        Assert.Equal("paused", (string)updated.Body!["status"]!);
        Assert.Null(updated.Body["spend_limit"]);
        Assert.Equal(5, (long)updated.Body["request_limit"]!["count"]!);
        Assert.Equal("cursor", (string)updated.Body["name"]!);
        Assert.Equal(60, (int)updated.Body["rate_limit"]!["rpm"]!);
        Assert.Equal("paused", (string)(await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).Body!["status"]!);
    }

    [Fact]
    public async Task RotatingGivesANewKeyAndKeepsTheLimits()
    {
        var m = await App.NewMerchantAsync();
        var created = await m.Client.PostJsonAsync("/v1/spend_keys", FullKey);
        var id = (string)created.Body!["spend_key_id"]!;
        var rotated = await m.Client.SendAsync(HttpMethod.Post, $"/v1/spend_keys/{id}/rotate");
        Assert.Equal(HttpStatusCode.OK, rotated.Status);
        Assert.Equal(id, (string)rotated.Body!["spend_key_id"]!);
        Assert.NotEqual((string)created.Body["key"]!, (string)rotated.Body["key"]!);
        Assert.Equal(created.Body["spend_limit"]!.ToJsonString(), rotated.Body["spend_limit"]!.ToJsonString());
        Assert.Equal(created.Body["created_at"]!.ToJsonString(), rotated.Body["created_at"]!.ToJsonString());
    }

    [Fact]
    public async Task ARevokedKeyAnswersSuccessThenIsGone()
    {
        var m = await App.NewMerchantAsync();
        var id = (string)(await m.Client.PostJsonAsync("/v1/spend_keys", new { name = "r" })).Body!["spend_key_id"]!;
        var revoked = await m.Client.DeleteJsonAsync($"/v1/spend_keys/{id}");
        Assert.Equal(HttpStatusCode.OK, revoked.Status);
        Assert.True((bool)revoked.Body!["success"]!);
        (await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.DeleteJsonAsync($"/v1/spend_keys/{id}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.SendAsync(HttpMethod.Post, $"/v1/spend_keys/{id}/rotate")).AssertProblem(HttpStatusCode.NotFound, "not_found");
    }

    [Fact]
    public async Task AnotherMerchantsKeyIsNotFoundForEveryCall()
    {
        var m = await App.NewMerchantAsync();
        var other = await App.NewMerchantAsync();
        var id = (string)(await other.Client.PostJsonAsync("/v1/spend_keys", new { name = "theirs" })).Body!["spend_key_id"]!;
        (await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.SendAsync(HttpMethod.Put, $"/v1/spend_keys/{id}", new { name = "mine" })).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.SendAsync(HttpMethod.Post, $"/v1/spend_keys/{id}/rotate")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        (await m.Client.DeleteJsonAsync($"/v1/spend_keys/{id}")).AssertProblem(HttpStatusCode.NotFound, "not_found");
        Assert.Equal("theirs", (string)(await other.Client.GetJsonAsync($"/v1/spend_keys/{id}")).Body!["name"]!);
    }

    public static TheoryData<string, string> BadCreates => new()
    {
        { """{}""", "name" },
        { """{"name":""}""", "name" },
        { """{"name":"x","status":"revoked"}""", "status" },
        { """{"name":"x","request_shape":"gemini"}""", "request_shape" },
        { """{"name":"x","allowed_models":["bad model"]}""", "allowed_models[0]" },
        { """{"name":"x","allowed_providers":[""]}""", "allowed_providers[0]" },
        { """{"name":"x","spend_limit":{"amount":"-1","cycle":"daily"}}""", "spend_limit.amount" },
        { """{"name":"x","spend_limit":{"amount":"0","cycle":"daily"}}""", "spend_limit.amount" },
        { """{"name":"x","spend_limit":{"amount":"10000000000000000","cycle":"daily"}}""", "spend_limit.amount" },
        { """{"name":"x","spend_limit":{"amount":"1.00000000001","cycle":"daily"}}""", "spend_limit.amount" },
        { """{"name":"x","spend_limit":{"amount":"1","cycle":"hourly"}}""", "spend_limit.cycle" },
        { """{"name":"x","spend_limit":{"cycle":"daily"}}""", "spend_limit.amount" },
        { """{"name":"x","request_limit":{"count":0,"cycle":"daily"}}""", "request_limit.count" },
        { """{"name":"x","request_limit":{"count":5}}""", "request_limit.cycle" },
        { """{"name":"x","rate_limit":{"rpm":0}}""", "rate_limit.rpm" },
        { """{"name":"x","rate_limit":{"rpm":10,"burst":-1}}""", "rate_limit.burst" },
    };

    [Theory]
    [MemberData(nameof(BadCreates))]
    public async Task ACreateWithABadFieldIsRefusedNamingIt(string body, string field)
    {
        var m = await App.NewMerchantAsync();
        var r = await m.Client.SendAsync(HttpMethod.Post, "/v1/spend_keys", Http.Json(body));
        var problem = r.AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.True(problem["errors"]!.AsObject().ContainsKey(field), problem.ToJsonString());
    }

    [Theory]
    [InlineData("""{"name":"x","spend_limit":{"amount":true,"cycle":"daily"}}""")]
    [InlineData("""{"name":"x","request_limit":{"count":"many","cycle":"daily"}}""")]
    [InlineData("""{"name":"x","expires_at":"tomorrow"}""")]
    [InlineData("""{"name":"x","allowed_models":"gpt-4o"}""")]
    public async Task ACreateWithAWrongTypeIsA400(string body)
    {
        var m = await App.NewMerchantAsync();
        var r = await m.Client.SendAsync(HttpMethod.Post, "/v1/spend_keys", Http.Json(body));
        Assert.Equal(HttpStatusCode.BadRequest, r.Status);
    }

    [Theory]
    [InlineData("""{"name":null}""", "name")]
    [InlineData("""{"status":null}""", "status")]
    [InlineData("""{"request_shape":"grpc"}""", "request_shape")]
    [InlineData("""{"spend_limit":{"amount":"5","cycle":"yearly"}}""", "spend_limit.cycle")]
    [InlineData("""{"rate_limit":{"burst":3}}""", "rate_limit.rpm")]
    public async Task AnUpdateWithABadFieldIsRefusedAndChangesNothing(string body, string field)
    {
        var m = await App.NewMerchantAsync();
        var id = (string)(await m.Client.PostJsonAsync("/v1/spend_keys", FullKey)).Body!["spend_key_id"]!;
        var r = await m.Client.SendAsync(HttpMethod.Put, $"/v1/spend_keys/{id}", Http.Json(body));
        var problem = r.AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.True(problem["errors"]!.AsObject().ContainsKey(field), problem.ToJsonString());
        var read = await m.Client.GetJsonAsync($"/v1/spend_keys/{id}");
        Assert.Equal("cursor", (string)read.Body!["name"]!);
        Assert.Equal("monthly", (string)read.Body["spend_limit"]!["cycle"]!);
    }

    [Fact]
    public async Task AnUnknownIdIsNotFound()
    {
        var m = await App.NewMerchantAsync();
        (await m.Client.GetJsonAsync("/v1/spend_keys/sk_nope")).AssertProblem(HttpStatusCode.NotFound, "not_found");
    }
}
