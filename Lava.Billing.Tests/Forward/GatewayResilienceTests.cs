using System.Net;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc.Testing;

namespace Lava.Billing.Tests.Forward;

public class GatewayResilienceTests(GatewayApp app) : GatewayTest<GatewayApp>(app)
{
    private static HttpContent Chat() => Http.Json("""{"model":"gpt-4o","messages":[]}""");

    private async Task<(LavaApp.Merchant M, HttpClient Client)> MeteredAsync()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "llm", "fixed", "tokens_1m", (0, 10));
        return (m, App.ClientWithToken(m.SecretKey, meterSlug: "llm"));
    }

    private Task<long> LedgerRowsAsync(string merchantId) =>
        App.QueryAsync<long>("SELECT (SELECT count(*) FROM requests WHERE merchant_id = @m) + (SELECT count(*) FROM ledger_transactions WHERE merchant_id = @m)", new { m = merchantId });

    [Theory]
    [InlineData("/v2/chat/completions")]
    [InlineData("/v1evil/chat/completions")]
    [InlineData("/")]
    public async Task AnUpstreamOffTheAllowListIsRefusedWithoutAConnection(string path)
    {
        var m = await App.NewMerchantAsync();
        (await m.Client.SendAsync(HttpMethod.Post, App.Forward(path), Chat())).AssertProblem(HttpStatusCode.BadRequest, "upstream_not_allowed");
        Assert.Equal((0, 0), (Fake.Connections, Fake.Calls));
    }

    [Fact]
    public async Task AnotherHostPortOrSchemeIsRefusedWithoutAConnection()
    {
        var m = await App.NewMerchantAsync();
        var port = new Uri(Fake.BaseUrl).Port;
        foreach (var url in new[]
                 {
                     $"http://localhost:{port}/v1/chat/completions", $"https://127.0.0.1:{port}/v1/chat/completions",
                     $"http://127.0.0.1:{port + 1}/v1/chat/completions", $"http://user:pw@127.0.0.1:{port}/v1/chat/completions",
                     "https://api.openai.com/v1/chat/completions",
                 })
        {
            (await m.Client.SendAsync(HttpMethod.Post, "/v1/forward?u=" + Uri.EscapeDataString(url), Chat()))
                .AssertProblem(HttpStatusCode.BadRequest, "upstream_not_allowed");
        }
        (await m.Client.SendAsync(HttpMethod.Post, "/v1/forward", Chat())).AssertProblem(HttpStatusCode.BadRequest, "upstream_not_allowed");
        Assert.Equal(0, Fake.Connections);
    }

    [Fact]
    public async Task AProviderErrorGoesBackAsItIsAndChargesNothing()
    {
        var (m, client) = await MeteredAsync();
        Fake.Next.Enqueue(http => FakeProvider.Json(http, """{"error":{"message":"boom","type":"server_error"}}""", 500));

        var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat());

        Assert.Equal(HttpStatusCode.InternalServerError, r.StatusCode);
        Assert.Contains("boom", await r.Content.ReadAsStringAsync());
        Assert.True(r.Headers.Contains("x-lava-request-id"));
        Assert.Equal(1, Fake.Calls);
        Assert.Equal(0, await LedgerRowsAsync(m.MerchantId));
    }

    [Fact]
    public async Task AProviderThatDoesNotAnswerInTimeIsA504AndChargesNothing()
    {
        var (m, client) = await MeteredAsync();
        Fake.Next.Enqueue(async http => await Task.Delay(TimeSpan.FromSeconds(5), http.RequestAborted));

        (await client.SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), Chat())).AssertProblem(HttpStatusCode.GatewayTimeout, "upstream_timeout");
        Assert.Equal(1, Fake.Calls);
        Assert.Equal(0, await LedgerRowsAsync(m.MerchantId));
    }

    [Fact]
    public async Task A503WithAShortRetryAfterIsRetriedAndBilledOnce()
    {
        var (m, client) = await MeteredAsync();
        Fake.Next.Enqueue(http =>
        {
            http.Response.Headers.RetryAfter = "0";
            return FakeProvider.Json(http, """{"error":"overloaded"}""", 503);
        });

        var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat());

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal(2, Fake.Calls);
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", new { m = m.MerchantId }));
    }

    [Fact]
    public async Task ARetryResendsTheSameBody()
    {
        var m = await App.NewMerchantAsync();
        Fake.Next.Enqueue(http =>
        {
            http.Response.Headers.RetryAfter = "0";
            return FakeProvider.Json(http, "{}", 429);
        });

        await m.Client.PostAsync(App.Forward("/v1/chat/completions"), Chat());

        var bodies = Fake.Requests.Select(q => q.Body).ToList();
        Assert.Equal(2, bodies.Count);
        Assert.Equal(bodies[0], bodies[1]);
        Assert.Contains("gpt-4o", bodies[0]);
    }

    [Theory]
    [InlineData(503, "5")]
    [InlineData(503, null)]
    [InlineData(500, "0")]
    public async Task OtherFailuresAreNotRetried(int status, string? retryAfter)
    {
        var (m, client) = await MeteredAsync();
        Fake.Next.Enqueue(http =>
        {
            if (retryAfter is not null) http.Response.Headers.RetryAfter = retryAfter;
            return FakeProvider.Json(http, "{}", status);
        });

        var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat());

        Assert.Equal(status, (int)r.StatusCode);
        Assert.Equal(1, Fake.Calls);
        Assert.Equal(0, await LedgerRowsAsync(m.MerchantId));
    }

    [Fact]
    public async Task ARefusedConnectionIsA502AndChargesNothing()
    {
        var (m, client) = await MeteredAsync();
        var url = "/v1/forward?u=" + Uri.EscapeDataString(App.ClosedUpstream + "/v1/chat/completions");

        (await client.SendAsync(HttpMethod.Post, url, Chat())).AssertProblem(HttpStatusCode.BadGateway, "upstream_unavailable");
        Assert.Equal(0, await LedgerRowsAsync(m.MerchantId));
    }

    [Fact]
    public async Task ARedirectIsNotFollowed()
    {
        var m = await App.NewMerchantAsync();
        Fake.Next.Enqueue(http =>
        {
            http.Response.StatusCode = StatusCodes.Status302Found;
            http.Response.Headers.Location = "http://127.0.0.1:1/steal";
            return Task.CompletedTask;
        });

        var client = App.CreateClient(new WebApplicationFactoryClientOptions { AllowAutoRedirect = false });
        client.DefaultRequestHeaders.Authorization = m.Client.DefaultRequestHeaders.Authorization;

        var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat());

        Assert.Equal(HttpStatusCode.Found, r.StatusCode);
        Assert.Equal("http://127.0.0.1:1/steal", r.Headers.Location?.ToString());
        Assert.Equal(1, Fake.Calls);
    }
}

/// <summary>A gateway whose breaker opens after two failures in a row.</summary>
public sealed class BreakerGatewayApp : GatewayApp
{
    protected override IEnumerable<(string Key, string Value)> Settings() =>
        base.Settings().Where(s => !s.Key.StartsWith("Forward:CircuitBreaker", StringComparison.Ordinal))
            .Append(("Forward:CircuitBreaker:MinimumThroughput", "2"))
            .Append(("Forward:CircuitBreaker:FailureRatio", "0.5"))
            .Append(("Forward:CircuitBreaker:BreakMs", "30000"));
}

public class GatewayBreakerTests(BreakerGatewayApp app) : GatewayTest<BreakerGatewayApp>(app)
{
    [Fact]
    public async Task TheCircuitOpensAfterRepeatedFailuresAndStopsCallingTheProvider()
    {
        var m = await App.NewMerchantAsync();
        for (var i = 0; i < 2; i++) Fake.Next.Enqueue(http => FakeProvider.Json(http, "{}", 500));
        var body = """{"model":"gpt-4o","messages":[]}""";

        Assert.Equal(HttpStatusCode.InternalServerError, (await m.Client.PostAsync(App.Forward("/v1/chat/completions"), Http.Json(body))).StatusCode);
        Assert.Equal(HttpStatusCode.InternalServerError, (await m.Client.PostAsync(App.Forward("/v1/chat/completions"), Http.Json(body))).StatusCode);
        (await m.Client.SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), Http.Json(body)))
            .AssertProblem(HttpStatusCode.BadGateway, "upstream_unavailable");

        Assert.Equal(2, Fake.Calls);
    }
}
