using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Lava.Billing.Tests.Infrastructure;
using Lava.Billing.Tests.SpendKeys;

namespace Lava.Billing.Tests.Translation;

/// <summary>A spend key of one request shape calling a model whose provider speaks the other: translated both ways, charged as usual.</summary>
public class SpendKeyTranslationTests(SpendKeyGatewayApp app) : Forward.GatewayTest<SpendKeyGatewayApp>(app)
{
    private async Task<(LavaApp.Merchant M, string Id, string Key)> KeyAsync(string shape)
    {
        var m = await App.NewMerchantAsync();
        var created = await m.Client.PostJsonAsync("/v1/spend_keys", new { name = "cross", request_shape = shape });
        Assert.Equal(HttpStatusCode.Created, created.Status);
        return (m, (string)created.Body!["spend_key_id"]!, (string)created.Body["key"]!);
    }

    [Fact]
    public async Task AnOpenAiShapedKeyAskingForAClaudeModelOnChatCompletionsGetsAChatCompletionChargedAtAnthropicsUsage()
    {
        var (m, id, key) = await KeyAsync("openai");
        var client = App.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);

        var r = await client.PostAsync("/v1/chat/completions",
            Http.Json("""{"model":"claude-sonnet-4-5","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}"""));
        var body = JsonNode.Parse(await r.Content.ReadAsStringAsync())!;

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("chat.completion", (string?)body["object"]);
        Assert.Equal("Hello world", (string?)body["choices"]![0]!["message"]!["content"]);
        var sent = Assert.Single(Fake.Requests);
        Assert.Equal("/v1/messages", sent.PathAndQuery);
        Assert.Equal("2023-06-01", sent.Headers["anthropic-version"]);
        // claude-sonnet-4-5: 100 × 3 + 1,000 cache reads × 0.30 + 200 cache writes × 3.75 + 300 × 15, per 1M.
        Assert.Equal("0.0058500000", (string)(await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).Body!["total_spend"]!);
    }

    [Fact]
    public async Task AnAnthropicShapedKeyAskingForAnOpenAiModelOnMessagesGetsStreamedMessageEventsChargedAtOpenAisUsage()
    {
        var (m, id, key) = await KeyAsync("anthropic");
        var client = App.CreateClient();
        client.DefaultRequestHeaders.Add("x-api-key", key);
        client.DefaultRequestHeaders.Add("anthropic-version", "2023-06-01");

        var r = await client.PostAsync("/v1/messages",
            Http.Json("""{"model":"gpt-4o","max_tokens":500,"stream":true,"messages":[{"role":"user","content":"hi"}]}"""));
        var text = await r.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.StartsWith("event: message_start", text);
        Assert.Contains("event: message_stop", text);
        var sent = Assert.Single(Fake.Requests);
        Assert.Equal("/v1/chat/completions", sent.PathAndQuery);
        Assert.False(sent.Headers.ContainsKey("anthropic-version"));
        Assert.Contains("\"include_usage\":true", sent.Body);
        // gpt-4o: 200 uncached input at 2.50, 1,000 cached at 1.25, 300 output at 10.00 per 1M tokens.
        Assert.Equal("0.0047500000", (string)(await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).Body!["total_spend"]!);
    }

    [Fact]
    public async Task ACrossShapeRequestThatCannotBeTranslatedIsRefusedBeforeTheKeyIsCharged()
    {
        var (m, id, key) = await KeyAsync("openai");
        var client = App.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);

        (await client.SendAsync(HttpMethod.Post, "/v1/chat/completions",
                Http.Json("""{"model":"claude-sonnet-4-5","n":2,"messages":[{"role":"user","content":"hi"}]}""")))
            .AssertProblem(HttpStatusCode.BadRequest, "untranslatable_request");

        Assert.Equal(0, Fake.Connections);
        Assert.Equal(0, (long)(await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).Body!["total_requests"]!);
    }
}
