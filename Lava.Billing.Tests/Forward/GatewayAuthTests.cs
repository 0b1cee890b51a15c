using System.Net;
using System.Net.Http.Headers;
using System.Text;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Forward;

public class GatewayAuthTests(GatewayApp app) : GatewayTest<GatewayApp>(app)
{
    private const string ByokKey = "sk-byok-7f3a9c1e-never-leaks";

    private static HttpContent Chat() => Http.Json("""{"model":"gpt-4o","messages":[]}""");

    private HttpClient WithBearer(string bearer)
    {
        var client = App.CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
        return client;
    }

    [Fact]
    public async Task TheSdksTokenWithNullsAuthenticates()
    {
        var m = await App.NewMerchantAsync();
        // Exactly what gateway() sends with provider_key only: {"secret_key":…,"customer_id":null,"meter_slug":null,"provider_key":…}
        var json = $$"""{"secret_key":"{{m.SecretKey}}","customer_id":null,"meter_slug":null,"provider_key":"pk"}""";
        var r = await WithBearer(Convert.ToBase64String(Encoding.UTF8.GetBytes(json))).PostAsync(App.Forward("/v1/chat/completions"), Chat());
        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
    }

    [Theory]
    [InlineData("not base64 at all!")]
    [InlineData("bm90IGpzb24=")]
    [InlineData("eyJzZWNyZXRfa2V5IjoiYWtzX3Rlc3RfdW5rbm93biJ9")] // {"secret_key":"aks_test_unknown"} — not padded, and unknown
    [InlineData("eyJzZWNyZXRfa2V5IjoiYWtzX3Rlc3RfdW5rbm93biJ9Cg==")]
    [InlineData("aks_test_unknown")]
    public async Task AMalformedTokenOrUnknownKeyIs401WithoutAProviderCall(string bearer)
    {
        (await WithBearer(bearer).SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), Chat()))
            .AssertProblem(HttpStatusCode.Unauthorized, "unauthorized");
        Assert.Equal(0, Fake.Calls);
    }

    [Fact]
    public async Task AForwardTokenIsNotAKeyForTheRestOfTheApi()
    {
        var m = await App.NewMerchantAsync();
        (await WithBearer(GatewayApp.Token(m.SecretKey)).GetJsonAsync("/v1/requests")).AssertProblem(HttpStatusCode.Unauthorized, "unauthorized");
    }

    [Fact]
    public async Task OurCredentialsStayHereAndProviderHeadersPassBothWays()
    {
        var m = await App.NewMerchantAsync();
        var request = new HttpRequestMessage(HttpMethod.Post, App.Forward("/v1/messages"))
        {
            Content = Http.Json("""{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[]}"""),
        };
        request.Headers.Add("anthropic-version", "2023-06-01");
        request.Headers.Add("anthropic-beta", "prompt-caching-2024-07-31");
        request.Headers.Add("Keep-Alive", "timeout=5");
        request.Headers.Add("Proxy-Authorization", "Basic abc");
        request.Headers.Add("x-lava-anything", "ours");

        var r = await m.Client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var received = Assert.Single(Fake.Requests).Headers;
        Assert.Equal("2023-06-01", received["anthropic-version"]);
        Assert.Equal("prompt-caching-2024-07-31", received["anthropic-beta"]);
        Assert.Equal(GatewayApp.ManagedKey, received["x-api-key"]);
        Assert.DoesNotContain("authorization", received.Keys);
        Assert.DoesNotContain("keep-alive", received.Keys);
        Assert.DoesNotContain("proxy-authorization", received.Keys);
        Assert.DoesNotContain("x-lava-anything", received.Keys);
        Assert.DoesNotContain(received.Values, v => v.Contains(m.SecretKey));
        Assert.Equal("prov_123", r.Headers.GetValues("x-provider-request-id").Single());
        Assert.True(r.Headers.Contains("x-lava-request-id"));
    }

    [Theory]
    [InlineData("/v1/chat/completions", """{"model":"gpt-4o","messages":[]}""", "authorization", "Bearer " + ByokKey)]
    [InlineData("/v1/messages", """{"model":"claude-sonnet-4-5","max_tokens":5,"messages":[]}""", "x-api-key", ByokKey)]
    [InlineData("/v1beta/models/gemini-2.5-flash:generateContent", """{"contents":[]}""", "x-goog-api-key", ByokKey)]
    public async Task ABringYourOwnKeyReachesTheProviderWhereItExpectsItAndNowhereElse(string path, string body, string header, string value)
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "llm", "fixed", "tokens_1m", (0, 10));
        var client = App.ClientWithToken(m.SecretKey, meterSlug: "llm", providerKey: ByokKey);
        var request = new HttpRequestMessage(HttpMethod.Post, App.Forward(path)) { Content = Http.Json(body) };
        request.Headers.Add("x-lava-metadata", """{"team":"a"}""");

        var r = await client.SendAsync(request);
        var responseText = await r.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var received = Assert.Single(Fake.Requests).Headers;
        Assert.Equal(value, received[header]);
        Assert.DoesNotContain(received, h => h.Key != header && h.Value.Contains(ByokKey));
        Assert.DoesNotContain(ByokKey, responseText);
        Assert.DoesNotContain(r.Headers.Concat(r.Content.Headers), h => h.Value.Any(v => v.Contains(ByokKey)));
        Assert.Equal(0, await App.QueryAsync<long>("""
            SELECT (SELECT count(*) FROM requests WHERE response LIKE @k OR metadata::text LIKE @k)
                 + (SELECT count(*) FROM ledger_transactions WHERE lineage::text LIKE @k)
            """, new { k = "%" + ByokKey + "%" }));
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", new { m = m.MerchantId }));
        Assert.DoesNotContain(App.Logs.Lines, line => line.Contains(ByokKey));
        Assert.NotEmpty(App.Logs.Lines);
    }

    [Fact]
    public async Task ABringYourOwnKeyNeverReachesTheLogsEvenWhenTheCallFails()
    {
        var m = await App.NewMerchantAsync();
        var client = App.ClientWithToken(m.SecretKey, providerKey: ByokKey);
        var url = "/v1/forward?u=" + Uri.EscapeDataString(App.ClosedUpstream + "/v1/chat/completions");

        var r = await client.SendAsync(HttpMethod.Post, url, Chat());

        var problem = r.AssertProblem(HttpStatusCode.BadGateway, "upstream_unavailable");
        Assert.DoesNotContain(ByokKey, problem.ToJsonString());
        Assert.Contains(App.Logs.Lines, line => line.Contains("failed"));
        Assert.DoesNotContain(App.Logs.Lines, line => line.Contains(ByokKey));
    }
}
