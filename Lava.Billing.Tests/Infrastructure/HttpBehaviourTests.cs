using System.Net;

namespace Lava.Billing.Tests.Infrastructure;

public class HttpBehaviourTests(LavaApp app) : ApiTest(app)
{
    [Fact]
    public async Task HealthAndReadinessAnswerWithoutAKey()
    {
        var client = App.ClientWithKey(null);
        Assert.Equal(HttpStatusCode.OK, (await client.GetJsonAsync("/healthz")).Status);
        Assert.Equal(HttpStatusCode.OK, (await client.GetJsonAsync("/readyz")).Status);
    }

    [Fact]
    public async Task AnUnknownRouteIsA404Problem()
    {
        var m = await App.NewMerchantAsync();
        (await m.Client.GetJsonAsync("/v1/nothing_here")).AssertProblem(HttpStatusCode.NotFound, "route_not_found");
    }

    [Fact]
    public async Task AKnownPathWithTheWrongMethodIs405WithAllow()
    {
        var m = await App.NewMerchantAsync();
        var r = await m.Client.SendAsync(HttpMethod.Put, "/v1/secret_keys");
        r.AssertProblem(HttpStatusCode.MethodNotAllowed, "method_not_allowed");
        Assert.Equal("GET, POST", string.Join(", ", r.Response.Content.Headers.Allow));
    }

    [Fact]
    public async Task APostWithoutAJsonBodyIs415()
    {
        var m = await App.NewMerchantAsync();
        (await m.Client.SendAsync(HttpMethod.Post, "/v1/secret_keys")).AssertProblem(HttpStatusCode.UnsupportedMediaType, "unsupported_media_type");
    }

    [Fact]
    public async Task ABodyOverOneMebibyteIsRefusedWith413()
    {
        var m = await App.NewMerchantAsync();
        var big = "{\"name\":\"" + new string('x', 1024 * 1024 + 10) + "\"}";
        (await m.Client.PostJsonAsync("/v1/secret_keys", Http.Json(big))).AssertProblem(HttpStatusCode.RequestEntityTooLarge, "payload_too_large");
    }

    [Fact]
    public async Task MalformedJsonIsA400ProblemWithoutInternals()
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.PostJsonAsync("/v1/secret_keys", Http.Json("{\"name\": "))).AssertProblem(HttpStatusCode.BadRequest, "invalid_json");
        Assert.DoesNotContain("System.", body.ToJsonString());
        Assert.DoesNotContain(" at ", (string)body["detail"]!);
    }

    [Fact]
    public async Task AWrongTypeNamesTheField()
    {
        var m = await App.NewMerchantAsync();
        var body = (await m.Client.PostJsonAsync("/v1/secret_keys", Http.Json("{\"name\": 42}"))).AssertProblem(HttpStatusCode.BadRequest, "invalid_json");
        Assert.NotNull(body["errors"]!["name"]);
    }

    [Fact]
    public async Task UnknownFieldsAreIgnored()
    {
        var m = await App.NewMerchantAsync();
        var r = await m.Client.PostJsonAsync("/v1/secret_keys", new { name = "x", favourite_colour = "blue" });
        Assert.Equal(HttpStatusCode.Created, r.Status);
    }
}
