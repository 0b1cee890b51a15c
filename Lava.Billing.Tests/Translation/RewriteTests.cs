using System.Net;
using System.Text.Json.Nodes;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Forward;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Translation;

/// <summary>
/// <c>/v1/rewrite/{format}/{provider URL}</c> end to end: a client of one shape, a fake provider of the other on
/// loopback, the usage billed from the provider's own answer and posted to the ledger.
/// </summary>
public class RewriteTests(GatewayApp app) : GatewayTest<GatewayApp>(app)
{
    // Rate 10 per 1M tokens on the customer's meter (the fake's answers, GatewayUsageTests has the provider costs).
    private const decimal Rate = 10m;

    private string Rewrite(string format, string providerPath) => $"/v1/rewrite/{format}/{Fake.BaseUrl}{providerPath}";

    private async Task<(LavaApp.Merchant M, HttpClient Client, string Customer)> CustomerAsync()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "llm", "fixed", "tokens_1m", (0, Rate));
        await App.GrantAsync(m.MerchantId, customer, 1m);
        return (m, App.ClientWithToken(m.SecretKey, customer, "llm"), customer);
    }

    /// <summary>The call's report, its hold and the ledger's revenue: billed once, from the provider's numbers.</summary>
    private async Task AssertBilledAsync(LavaApp.Merchant m, HttpResponseMessage r, long input, long output, decimal cost)
    {
        var requestId = r.Headers.GetValues("x-lava-request-id").Single();
        var charge = (input + output) * Rate / 1_000_000m;
        Assert.Equal((input, output, cost, charge), await App.QueryAsync<(long, long, decimal, decimal)>(
            "SELECT input_tokens, output_tokens, cost, charge_amount FROM requests WHERE merchant_id = @m AND request_id = @r",
            new { m = m.MerchantId, r = requestId }));
        Assert.Equal("captured", await App.QueryAsync<string>("SELECT status FROM holds WHERE merchant_id = @m AND request_id = @r",
            new { m = m.MerchantId, r = requestId }));
        Assert.Equal("posted", await App.QueryAsync<string>("SELECT state FROM forward_calls WHERE merchant_id = @m AND request_id = @r",
            new { m = m.MerchantId, r = requestId }));
        Assert.Equal(charge, -await App.EntriesSumAsync(m.MerchantId, LedgerAccounts.UsageRevenue));
    }

    [Fact]
    public async Task AnOpenAiShapedChatReachesAnthropicAsAMessagesRequestAndComesBackAsAChatCompletionBilledFromAnthropicsUsage()
    {
        var (m, client, _) = await CustomerAsync();

        var r = await client.PostAsync(Rewrite("openai", "/v1/messages"), Http.Json("""
            {"model":"claude-sonnet-4-5","max_tokens":500,"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Say hello"}]}
            """));
        var body = JsonNode.Parse(await r.Content.ReadAsStringAsync())!;

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("application/json", r.Content.Headers.ContentType?.MediaType);
        Assert.Equal("chat.completion", (string?)body["object"]);
        Assert.Equal("Hello world", (string?)body["choices"]![0]!["message"]!["content"]);
        Assert.Equal("stop", (string?)body["choices"]![0]!["finish_reason"]);
        // 100 uncached + 1,000 cache reads + 200 cache writes, each once.
        Assert.Equal(1300, (long?)body["usage"]!["prompt_tokens"]);
        var sent = Assert.Single(Fake.Requests);
        Assert.Equal("/v1/messages", sent.PathAndQuery);
        Assert.Equal(GatewayApp.ManagedKey, sent.Headers["x-api-key"]);
        Assert.Equal("2023-06-01", sent.Headers["anthropic-version"]);
        var upstream = JsonNode.Parse(sent.Body)!;
        Assert.Equal("Be brief.", (string?)upstream["system"]![0]!["text"]);
        Assert.Equal(500, (long?)upstream["max_tokens"]);
        await AssertBilledAsync(m, r, input: 1300, output: 300, cost: 0.00585m);
    }

    [Fact]
    public async Task AStreamedOpenAiShapedChatToAnthropicComesBackAsChunksEndingInUsageAndDone()
    {
        var (m, client, _) = await CustomerAsync();

        var r = await client.PostAsync(Rewrite("openai", "/v1/messages"), Http.Json("""
            {"model":"claude-sonnet-4-5","max_tokens":500,"stream":true,"messages":[{"role":"user","content":"Say hello"}]}
            """));
        var text = await r.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("text/event-stream", r.Content.Headers.ContentType?.MediaType);
        var data = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(f => f["data: ".Length..]).ToList();
        Assert.Equal("[DONE]", data[^1]);
        var chunks = data.SkipLast(1).Select(d => JsonNode.Parse(d)!).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", (string?)c["object"]));
        Assert.Equal("Hello world", string.Concat(chunks.Where(c => c["choices"]!.AsArray().Count > 0)
            .Select(c => (string?)c["choices"]![0]!["delta"]!["content"])));
        Assert.Equal(1300, (long?)chunks[^1]["usage"]!["prompt_tokens"]);
        await AssertBilledAsync(m, r, input: 1300, output: 300, cost: 0.00585m);
    }

    [Fact]
    public async Task ATranslatedStreamIsPassedOnAsItArrivesNotBufferedWhole()
    {
        var m = await App.NewMerchantAsync();
        Fake.HoldAfterEvents = 2;
        var request = new HttpRequestMessage(HttpMethod.Post, Rewrite("openai", "/v1/messages"))
        {
            Content = Http.Json("""{"model":"claude-sonnet-4-5","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}"""),
        };

        using var r = await m.Client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        await using var body = await r.Content.ReadAsStreamAsync();
        var seen = await ReadUntilAsync(body, "\"role\":\"assistant\"", TimeSpan.FromSeconds(5));

        Assert.Contains("chat.completion.chunk", seen);
        Assert.DoesNotContain("[DONE]", seen);
        Fake.Release.SetResult();
        var rest = await new StreamReader(body).ReadToEndAsync();
        Assert.EndsWith("data: [DONE]\n\n", rest);
    }

    private static async Task<string> ReadUntilAsync(Stream body, string marker, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        var seen = new System.Text.StringBuilder();
        var buffer = new byte[4096];
        while (!seen.ToString().Contains(marker))
        {
            var n = await body.ReadAsync(buffer, cts.Token);
            if (n == 0) break;
            seen.Append(System.Text.Encoding.UTF8.GetString(buffer, 0, n));
        }
        return seen.ToString();
    }

    [Fact]
    public async Task AnAnthropicShapedRequestReachesAnOpenAiProviderAsAChatCompletionAndComesBackAsAMessage()
    {
        var (m, client, _) = await CustomerAsync();

        var r = await client.PostAsync(Rewrite("anthropic", "/v1/chat/completions"), Http.Json("""
            {"model":"gpt-4o","max_tokens":500,"system":"Be brief.","messages":[{"role":"user","content":"Say hello"}]}
            """));
        var body = JsonNode.Parse(await r.Content.ReadAsStringAsync())!;

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("message", (string?)body["type"]);
        Assert.Equal("Hello world", (string?)body["content"]![0]!["text"]);
        Assert.Equal("end_turn", (string?)body["stop_reason"]);
        // OpenAI's 1,200 prompt tokens include 1,000 cached: 200 + 1,000, not 1,200 + 1,000.
        Assert.Equal((200, 1000, 300), ((long?)body["usage"]!["input_tokens"], (long?)body["usage"]!["cache_read_input_tokens"], (long?)body["usage"]!["output_tokens"]));
        var sent = Assert.Single(Fake.Requests);
        Assert.Equal("Bearer " + GatewayApp.ManagedKey, sent.Headers["authorization"]);
        var upstream = JsonNode.Parse(sent.Body)!;
        Assert.Equal("system", (string?)upstream["messages"]![0]!["role"]);
        await AssertBilledAsync(m, r, input: 1200, output: 300, cost: 0.00475m);
    }

    [Fact]
    public async Task AStreamedAnthropicShapedRequestToAnOpenAiProviderAsksForUsageAndComesBackAsMessageEvents()
    {
        var (m, client, _) = await CustomerAsync();

        var r = await client.PostAsync(Rewrite("anthropic", "/v1/chat/completions"), Http.Json("""
            {"model":"gpt-4o","max_tokens":500,"stream":true,"messages":[{"role":"user","content":"Say hello"}]}
            """));
        var text = await r.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Contains("\"include_usage\":true", Assert.Single(Fake.Requests).Body);
        var names = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries).Select(f => f.Split('\n')[0]).ToList();
        Assert.Equal("event: message_start", names[0]);
        Assert.Equal("event: message_stop", names[^1]);
        Assert.Contains("\"output_tokens\":300", text);
        await AssertBilledAsync(m, r, input: 1200, output: 300, cost: 0.00475m);
    }

    [Fact]
    public async Task ARequestThatCannotBeTranslatedIsRefusedWith400BeforeAnythingIsHeldOrSent()
    {
        var (m, client, _) = await CustomerAsync();

        var r = await client.SendAsync(HttpMethod.Post, Rewrite("openai", "/v1/messages"),
            Http.Json("""{"model":"claude-sonnet-4-5","n":3,"messages":[{"role":"user","content":"hi"}]}"""));

        r.AssertProblem(HttpStatusCode.BadRequest, "untranslatable_request");
        Assert.Equal(0, Fake.Connections);
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM forward_calls WHERE merchant_id = @m", new { m = m.MerchantId }));
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM holds WHERE merchant_id = @m", new { m = m.MerchantId }));
    }

    [Fact]
    public async Task AnUnknownFormatAnUntranslatableEndpointAndAnUpstreamOffTheAllowListAreRefusedWith400()
    {
        var (_, client, _) = await CustomerAsync();
        var chat = """{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}""";

        (await client.SendAsync(HttpMethod.Post, Rewrite("bedrock", "/v1/chat/completions"), Http.Json(chat)))
            .AssertProblem(HttpStatusCode.BadRequest, "unsupported_format");
        (await client.SendAsync(HttpMethod.Post, Rewrite("anthropic", "/v1/embeddings"), Http.Json(chat)))
            .AssertProblem(HttpStatusCode.BadRequest, "untranslatable_upstream");
        (await client.SendAsync(HttpMethod.Post, "/v1/rewrite/anthropic/https://api.example.com/v1/chat/completions", Http.Json(chat)))
            .AssertProblem(HttpStatusCode.BadRequest, "upstream_not_allowed");
        Assert.Equal(0, Fake.Connections);
    }

    [Fact]
    public async Task TheSameShapeOnBothSidesIsForwardedUnchanged()
    {
        var (m, client, _) = await CustomerAsync();

        var r = await client.PostAsync(Rewrite("anthropic", "/v1/messages"),
            Http.Json("""{"model":"claude-sonnet-4-5","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}"""));

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("message", (string?)JsonNode.Parse(await r.Content.ReadAsStringAsync())!["type"]);
        Assert.Equal("""{"model":"claude-sonnet-4-5","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}""", Assert.Single(Fake.Requests).Body);
        await AssertBilledAsync(m, r, input: 1300, output: 300, cost: 0.00585m);
    }

    [Fact]
    public async Task AProviderErrorReachesTheClientInItsOwnErrorShapeAndNothingIsCharged()
    {
        var (m, client, _) = await CustomerAsync();
        Fake.Next.Enqueue(http => FakeProvider.Json(http, """{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}""", 429));

        var r = await client.PostAsync(Rewrite("anthropic", "/v1/chat/completions"),
            Http.Json("""{"model":"gpt-4o","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"""));
        var body = JsonNode.Parse(await r.Content.ReadAsStringAsync())!;

        Assert.Equal(HttpStatusCode.TooManyRequests, r.StatusCode);
        Assert.Equal("error", (string?)body["type"]);
        Assert.Equal(("rate_limit_error", "Rate limit reached"), ((string?)body["error"]!["type"], (string?)body["error"]!["message"]));
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", new { m = m.MerchantId }));
        Assert.Equal("released", await App.QueryAsync<string>("SELECT state FROM forward_calls WHERE merchant_id = @m", new { m = m.MerchantId }));
    }

    [Fact]
    public async Task WithoutAKeyTheRewriteRouteAnswers401()
    {
        var r = await App.CreateClient().SendAsync(HttpMethod.Post, Rewrite("openai", "/v1/messages"), Http.Json("{}"));

        r.AssertProblem(HttpStatusCode.Unauthorized, "unauthorized");
    }
}
