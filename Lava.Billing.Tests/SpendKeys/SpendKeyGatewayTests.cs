using System.Net;
using System.Net.Http.Headers;
using Lava.Billing.Tests.Forward;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.SpendKeys;

/// <summary>The gateway app with the spend-key model table pointed at the fake provider.</summary>
public sealed class SpendKeyGatewayApp : GatewayApp
{
    protected override IEnumerable<(string Key, string Value)> Settings() =>
    [
        .. base.Settings(),
        // The concurrency test keeps three calls waiting at the provider; the base second would time them out and retry.
        ("Forward:TimeoutsMs:127.0.0.1", "30000"),
        ("SpendKeys:Routes:0:Prefix", "gpt-"), ("SpendKeys:Routes:0:Provider", "openai"),
        ("SpendKeys:Routes:0:Shape", "openai"), ("SpendKeys:Routes:0:BaseUrl", Fake.BaseUrl + "/v1"),
        ("SpendKeys:Routes:1:Prefix", "claude-"), ("SpendKeys:Routes:1:Provider", "anthropic"),
        ("SpendKeys:Routes:1:Shape", "anthropic"), ("SpendKeys:Routes:1:BaseUrl", Fake.BaseUrl + "/v1"),
    ];
}

public class SpendKeyGatewayTests(SpendKeyGatewayApp app) : GatewayTest<SpendKeyGatewayApp>(app)
{
    private const string Chat = """{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":1000}""";

    private async Task<(LavaApp.Merchant M, string Id, string Key)> KeyAsync(object body)
    {
        var m = await App.NewMerchantAsync();
        var created = await m.Client.PostJsonAsync("/v1/spend_keys", body);
        Assert.Equal(HttpStatusCode.Created, created.Status);
        return (m, (string)created.Body!["spend_key_id"]!, (string)created.Body["key"]!);
    }

    private HttpClient Bearer(string key)
    {
        var client = App.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }

    [Fact]
    public async Task AChatCompletionWithASpendKeyReachesTheProviderWithTheManagedKeyAndIsChargedItsCost()
    {
        var (m, id, key) = await KeyAsync(new { name = "tool" });
        var r = await Bearer(key).SendAsync(HttpMethod.Post, "/v1/chat/completions", Http.Json(Chat));
        Assert.Equal(HttpStatusCode.OK, r.Status);
        var received = Assert.Single(Fake.Requests);
        Assert.Equal("Bearer " + GatewayApp.ManagedKey, received.Headers["authorization"]);
        Assert.DoesNotContain(key, string.Join(",", received.Headers.Values));

        var read = (await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).Body!;
        // gpt-4o list price: 200 uncached input at 2.50, 1000 cached at 1.25, 300 output at 10.00 per 1M tokens.
        Assert.Equal("0.0047500000", (string)read["current_spend"]!);
        Assert.Equal(1, (long)read["total_requests"]!);
        Assert.NotNull(read["last_used_at"]);
    }

    [Fact]
    public async Task AWorstCasePastTheMoneyBoundHoldsTheBoundInsteadOfFailing()
    {
        var (m, _, key) = await KeyAsync(new { name = "absurd-cap" });
        Assert.Equal(HttpStatusCode.Created, (await m.Client.PostJsonAsync("/v1/model_prices", new { model = "gpt-4o", input = "1", output = "1000000" })).Status);
        // 1e16 output tokens at 1,000,000 per 1M tokens: 1e16, past every stored amount's bound (1e15). It was a 500.
        var r = await Bearer(key).SendAsync(HttpMethod.Post, "/v1/chat/completions",
            Http.Json("""{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"max_tokens":10000000000000000}"""));
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal(1, Fake.Calls);
        Assert.Equal((1_000_000_000_000_000m, "captured"), await App.QueryAsync<(decimal, string)>(
            "SELECT held_amount, status FROM spend_key_charges WHERE merchant_id = @MerchantId", new { m.MerchantId }));
    }

    [Fact]
    public async Task AStreamedChatCompletionIsPassedThroughAndCharged()
    {
        var (m, id, key) = await KeyAsync(new { name = "stream" });
        using var r = await Bearer(key).PostAsync("/v1/chat/completions",
            Http.Json("""{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"""));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal("text/event-stream", r.Content.Headers.ContentType?.MediaType);
        Assert.Contains("data: [DONE]", await r.Content.ReadAsStringAsync());
        Assert.Equal("0.0047500000", (string)(await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).Body!["total_spend"]!);
    }

    [Fact]
    public async Task AStreamedChatThatDoesNotAskForUsageIsStillChargedWhatTheProviderReported()
    {
        var (m, id, key) = await KeyAsync(new { name = "plain-stream" });
        using var r = await Bearer(key).PostAsync("/v1/chat/completions",
            Http.Json("""{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"""));
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Contains("data: [DONE]", await r.Content.ReadAsStringAsync());
        Assert.Contains("\"include_usage\":true", Assert.Single(Fake.Requests).Body);
        var read = (await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).Body!;
        Assert.Equal("0.0047500000", (string)read["total_spend"]!);
    }

    [Fact]
    public async Task AKeyRotatedMidStreamKeepsBillingTheCallItStarted()
    {
        var (m, id, key) = await KeyAsync(new { name = "rotate-mid-stream" });
        Fake.HoldAfterEvents = 2;
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/chat/completions")
        {
            Content = Http.Json("""{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"""),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        using var response = await App.CreateClient().SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await using var body = await response.Content.ReadAsStreamAsync();
        var first = new byte[256];
        Assert.True(await body.ReadAsync(first) > 0, "the stream started before the rotation");

        var rotated = await m.Client.SendAsync(HttpMethod.Post, $"/v1/spend_keys/{id}/rotate");
        Assert.Equal(HttpStatusCode.OK, rotated.Status);
        Fake.Release.SetResult();
        Assert.Contains("data: [DONE]", await new StreamReader(body).ReadToEndAsync());

        var read = (await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).Body!;
        Assert.Equal("0.0047500000", (string)read["total_spend"]!);
        Assert.Equal(1, (long)read["total_requests"]!);
        (await Bearer(key).SendAsync(HttpMethod.Post, "/v1/chat/completions", Http.Json(Chat))).AssertProblem(HttpStatusCode.Unauthorized, "unauthorized");
        Assert.Equal(HttpStatusCode.OK, (await Bearer((string)rotated.Body!["key"]!).SendAsync(HttpMethod.Post, "/v1/chat/completions", Http.Json(Chat))).Status);
        Assert.Equal(2, Fake.Calls);
    }

    [Fact]
    public async Task AnAnthropicKeyCallsMessagesWithItsXApiKey()
    {
        var (m, id, key) = await KeyAsync(new { name = "claude", request_shape = "anthropic" });
        var client = App.CreateClient();
        client.DefaultRequestHeaders.Add("x-api-key", key);
        client.DefaultRequestHeaders.Add("anthropic-version", "2023-06-01");
        var r = await client.SendAsync(HttpMethod.Post, "/v1/messages",
            Http.Json("""{"model":"claude-sonnet-4-5","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}"""));
        Assert.Equal(HttpStatusCode.OK, r.Status);
        Assert.Equal(GatewayApp.ManagedKey, Assert.Single(Fake.Requests).Headers["x-api-key"]);
        Assert.Equal(1, (long)(await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).Body!["total_requests"]!);
    }

    [Fact]
    public async Task FiftyConcurrentCallsAgainstABudgetForExactlyThreeLetExactlyThreeReachTheProvider()
    {
        // Each call's worst case is about 0.0102 (1000 output tokens at 10.00 per 1M plus its bytes as input): 3 fit in 0.031, 4 do not.
        var (_, _, key) = await KeyAsync(new { name = "budget", spend_limit = new { amount = "0.031", cycle = "total" } });
        var gate = new TaskCompletionSource();
        for (var i = 0; i < 3; i++)
            Fake.Next.Enqueue(async http =>
            {
                await gate.Task;
                await FakeProvider.Json(http, """{"id":"c","object":"chat.completion","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}""");
            });
        var calls = Enumerable.Range(0, 50).Select(_ => Bearer(key).SendAsync(HttpMethod.Post, "/v1/chat/completions", Http.Json(Chat))).ToList();
        // The three granted calls wait at the provider until the other 47 were answered, so no capture frees budget early.
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (calls.Count(c => c.IsCompleted) < 47 && DateTime.UtcNow < deadline) await Task.Delay(50);
        gate.SetResult();
        var results = await Task.WhenAll(calls);
        Assert.Equal(3, Fake.Calls);
        Assert.Equal(3, results.Count(r => r.Status == HttpStatusCode.OK));
        Assert.All(results.Where(r => r.Status != HttpStatusCode.OK), r => r.AssertProblem(HttpStatusCode.PaymentRequired, "spend_limit_reached"));
    }

    [Fact]
    public async Task RefusedCallsNeverConnectToTheProvider()
    {
        var (m, id, key) = await KeyAsync(new { name = "refusals", allowed_models = new[] { "gpt-4o" }, rate_limit = new { rpm = 1, burst = 1 } });
        var client = Bearer(key);
        (await client.SendAsync(HttpMethod.Post, "/v1/chat/completions", Http.Json(Chat.Replace("gpt-4o", "gpt-4o-mini"))))
            .AssertProblem(HttpStatusCode.Forbidden, "model_not_allowed");
        (await client.SendAsync(HttpMethod.Post, "/v1/messages", Http.Json(Chat))).AssertProblem(HttpStatusCode.BadRequest, "wrong_request_shape");
        Assert.Equal(HttpStatusCode.OK, (await client.SendAsync(HttpMethod.Post, "/v1/chat/completions", Http.Json(Chat))).Status);
        var limited = await client.SendAsync(HttpMethod.Post, "/v1/chat/completions", Http.Json(Chat));
        limited.AssertProblem(HttpStatusCode.TooManyRequests, "rate_limited");
        Assert.True(int.Parse(limited.Response.Headers.RetryAfter!.ToString()) is > 0 and <= 60);

        await m.Client.SendAsync(HttpMethod.Put, $"/v1/spend_keys/{id}", new { status = "paused" });
        (await client.SendAsync(HttpMethod.Post, "/v1/chat/completions", Http.Json(Chat))).AssertProblem(HttpStatusCode.Forbidden, "spend_key_paused");
        await m.Client.DeleteJsonAsync($"/v1/spend_keys/{id}");
        (await client.SendAsync(HttpMethod.Post, "/v1/chat/completions", Http.Json(Chat))).AssertProblem(HttpStatusCode.Unauthorized, "unauthorized");
        Assert.Equal(1, Fake.Connections);
    }

    [Fact]
    public async Task AProviderFailureReleasesTheHoldAndTheRequestSlot()
    {
        var (m, id, key) = await KeyAsync(new { name = "fail", request_limit = new { count = 1, cycle = "daily" } });
        Fake.Next.Enqueue(http => FakeProvider.Json(http, """{"error":{"message":"bad","type":"invalid_request_error"}}""", 400));
        Assert.Equal(HttpStatusCode.BadRequest, (await Bearer(key).SendAsync(HttpMethod.Post, "/v1/chat/completions", Http.Json(Chat))).Status);
        var read = (await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).Body!;
        Assert.Equal(0, (long)read["current_requests"]!);
        Assert.Equal("0.0000000000", (string)read["total_spend"]!);
        Assert.Equal(HttpStatusCode.OK, (await Bearer(key).SendAsync(HttpMethod.Post, "/v1/chat/completions", Http.Json(Chat))).Status);
    }

    [Fact]
    public async Task AClientThatLeavesBeforeTheProviderAnswersIsBilledThePromptsEstimateAsOnForward()
    {
        var (m, id, key) = await KeyAsync(new { name = "leaves-early" });
        var reached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // The provider has the request and is working on it; it never answers before the gateway gives up on it.
        Fake.Next.Enqueue(async http =>
        {
            reached.SetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, http.RequestAborted);
            }
            catch (OperationCanceledException)
            {
                // The gateway dropped the call.
            }
        });
        using var leave = new CancellationTokenSource();
        var call = Bearer(key).PostAsync("/v1/chat/completions", Http.Json(Chat), leave.Token);
        await reached.Task.WaitAsync(TimeSpan.FromSeconds(10));
        leave.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);

        var args = new { m.MerchantId };
        await Waits.UntilAsync(async () => await App.QueryAsync<string>(
            "SELECT status FROM spend_key_charges WHERE merchant_id = @MerchantId", args) != "held", "the call's charge was settled");
        // The provider was paid for the prompt: the call is billed the estimate its hold recorded (a few input tokens at
        // 2.50 per 1M, no output), flagged, and counts as a request.
        var (status, amount, estimate, estimated) = await App.QueryAsync<(string, decimal?, decimal, bool?)>(
            "SELECT status, amount, usage_amount, estimated FROM spend_key_charges WHERE merchant_id = @MerchantId", args);
        Assert.Equal(("captured", true), (status, estimated));
        Assert.True(estimate > 0, $"estimate {estimate}");
        Assert.Equal(estimate, amount);
        var read = (await m.Client.GetJsonAsync($"/v1/spend_keys/{id}")).Body!;
        Assert.Equal(estimate, decimal.Parse((string)read["total_spend"]!, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(1, (long)read["total_requests"]!);
    }

    [Fact]
    public async Task TheModelListShowsOnlyWhatTheKeyMayCall()
    {
        var (_, _, openAi) = await KeyAsync(new { name = "models" });
        var all = (await Bearer(openAi).GetJsonAsync("/v1/models")).Body!["data"]!.AsArray().Select(m => (string)m!["id"]!).ToList();
        Assert.Contains("gpt-4o", all);
        // Claude models too: an OpenAI-shaped key reaches them through translation.
        Assert.Contains("claude-sonnet-4-5", all);

        var (_, _, narrow) = await KeyAsync(new { name = "narrow", allowed_models = new[] { "gpt-4o", "claude-sonnet-4-5" } });
        var listed = (await Bearer(narrow).GetJsonAsync("/v1/models")).Body!["data"]!.AsArray().Select(m => (string)m!["id"]!).ToList();
        Assert.Equal(["claude-sonnet-4-5", "gpt-4o"], listed.Order());
    }
}
