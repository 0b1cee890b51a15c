using System.Net;
using Lava.Billing.Tests.Finance;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Lava.Billing.Tests.Merchants;

public class ReadOnlyKeyTests(LavaApp app) : ApiTest(app)
{
    /// <summary>Every /v1 route with a method other than GET or HEAD, as the app serves them: a new route is in here at once.</summary>
    private List<(string Method, string Pattern)> WriteRoutes()
    {
        _ = App.Server;   // builds the app, so its endpoints exist
        return App.Services.GetRequiredService<EndpointDataSource>().Endpoints.OfType<RouteEndpoint>()
            .Where(e => e.RoutePattern.RawText!.TrimStart('/').StartsWith("v1", StringComparison.Ordinal))
            .SelectMany(e => (e.Metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods ?? ["POST", "PUT", "PATCH", "DELETE"])
                .Select(method => (method, "/" + e.RoutePattern.RawText!.Trim('/'))))
            .Where(r => r.method is not ("GET" or "HEAD"))
            .Distinct()
            .ToList();
    }

    private async Task<string> StateAsync(string merchantId) => string.Join(',', await Task.WhenAll(
        new[] { "requests", "ledger_transactions", "entries", "customers", "meters", "usage_totals" }
            .Select(t => App.QueryAsync<long>($"SELECT count(*) FROM {t} WHERE merchant_id = @m", new { m = merchantId })))) +
        await App.QueryAsync<long>("SELECT count(*) FROM secret_keys WHERE merchant_id = @m AND revoked_at IS NULL", new { m = merchantId });

    [Fact]
    public async Task AReadOnlyKeyIsRefusedOnEveryWriteRouteAndChangesNothing()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        await m.ReportAsync("existing", customer, "gpt");
        var readOnly = App.ClientWithKey(await m.ReadOnlyKeyAsync());
        var fullKeyId = (string)(await m.Client.GetJsonAsync("/v1/secret_keys")).Body!["data"]![0]!["secret_key_id"]!;
        var routes = WriteRoutes();
        Assert.Contains(("POST", "/v1/requests"), routes);
        Assert.Contains(("POST", "/v1/secret_keys"), routes);
        Assert.Contains(("DELETE", "/v1/secret_keys/{secretKeyId}"), routes);
        var before = await StateAsync(m.MerchantId);

        foreach (var (method, pattern) in routes)
        {
            // Real ids where the route names one, so a route that forgot the check would really change something.
            var path = System.Text.RegularExpressions.Regex.Replace(pattern, @"\{\*{0,2}(\w+)[^}]*\}", p => p.Groups[1].Value switch
            {
                "secretKeyId" => fullKeyId,
                "customerId" => customer,
                _ => "existing",
            });
            var body = new { request_id = "new-" + method, customer_id = customer, meter_slug = "gpt", name = "x", scope = "full" };
            var r = await readOnly.SendAsync(new HttpMethod(method), path, body);
            Assert.True(r.Status == HttpStatusCode.Forbidden, $"{method} {path}: {(int)r.Status} {r.Body?.ToJsonString()}");
            r.AssertProblem(HttpStatusCode.Forbidden, "read_only_key");
        }

        Assert.Equal(before, await StateAsync(m.MerchantId));
        Assert.Equal(HttpStatusCode.OK, (await m.Client.GetJsonAsync("/v1/secret_keys")).Status);
    }

    [Fact]
    public async Task AReadOnlyKeyReadsAndExportsEverythingOfItsMerchant()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        var transactionId = await m.ReportAsync("r1", customer, "gpt");
        var readOnly = App.ClientWithKey(await m.ReadOnlyKeyAsync());

        foreach (var path in new[]
                 {
                     "/v1/requests", "/v1/requests/r1", "/v1/secret_keys", "/v1/usage?start=2026-01-01", "/v1/ledger/accounts",
                     $"/v1/ledger/transactions/{transactionId}", "/v1/ledger/entries", "/v1/ledger/trial-balance", "/v1/ledger/verify",
                     $"/v1/customers/{customer}/statement", "/v1/ledger/entries?format=csv", "/v1/requests?format=ndjson",
                 })
        {
            var response = await readOnly.GetAsync(path);
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"GET {path}: {(int)response.StatusCode}");
        }
        using var head = new HttpRequestMessage(HttpMethod.Head, "/v1/requests");
        Assert.NotEqual(HttpStatusCode.Forbidden, (await readOnly.SendAsync(head)).StatusCode);
    }

    [Fact]
    public async Task AFullKeyStillWrites()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        await m.ReadOnlyKeyAsync();
        Assert.Equal(HttpStatusCode.Created, (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "w", meter_slug = "gpt" })).Status);
    }
}
