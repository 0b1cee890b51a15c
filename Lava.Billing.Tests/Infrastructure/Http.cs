using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>Small helpers so tests read as requests and assertions on what a user sees.</summary>
public static class Http
{
    public static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    public static StringContent Json(object body) => Json(JsonSerializer.Serialize(body));

    public static async Task<(HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response)> SendAsync(
        this HttpClient client, HttpMethod method, string path, object? body = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null) request.Content = body as HttpContent ?? Json(body);
        var response = await client.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? null : JsonNode.Parse(text), response);
    }

    public static Task<(HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response)> GetJsonAsync(this HttpClient c, string path) =>
        c.SendAsync(HttpMethod.Get, path);

    public static Task<(HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response)> PostJsonAsync(this HttpClient c, string path, object body) =>
        c.SendAsync(HttpMethod.Post, path, body);

    public static Task<(HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response)> PatchJsonAsync(this HttpClient c, string path, object body) =>
        c.SendAsync(HttpMethod.Patch, path, body);

    public static Task<(HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response)> DeleteJsonAsync(this HttpClient c, string path) =>
        c.SendAsync(HttpMethod.Delete, path);

    /// <summary>Asserts the response is a problem with the given status and error code, and returns its body.</summary>
    public static JsonNode AssertProblem(this (HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response) r, HttpStatusCode status, string code)
    {
        Assert.True(status == r.Status, $"expected {(int)status} {code}, got {(int)r.Status}: {r.Body?.ToJsonString()}");
        Assert.Equal("application/problem+json", r.Response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(code, (string?)r.Body!["error"]!["code"]);
        Assert.Equal((int)status, (int)r.Body["status"]!);
        return r.Body;
    }
}
