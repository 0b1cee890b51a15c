using System.Globalization;
using System.Net;
using Lava.Billing.Infrastructure.Observability;
using Microsoft.AspNetCore.Hosting;

namespace Lava.Billing.Tests.Infrastructure;

public class MetricsTests(LavaApp app) : ApiTest(app)
{
    private Task<string> ScrapeAsync() => ScrapeAsync(App.CreateClient());

    internal static async Task<string> ScrapeAsync(HttpClient client)
    {
        var response = await client.GetAsync(Observability.Path);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType!.MediaType);
        return await response.Content.ReadAsStringAsync();
    }

    /// <summary>The sum of a series' samples whose labels include every given <c>name="value"</c> pair; null when none.</summary>
    internal static double? Sample(string scrape, string name, params string[] labels)
    {
        var values = scrape.Split('\n')
            .Where(l => l.StartsWith(name + "{", StringComparison.Ordinal) || l.StartsWith(name + " ", StringComparison.Ordinal))
            .Where(l => labels.All(label => l.Contains(label, StringComparison.Ordinal)))
            .Select(l => double.Parse(l.Split(' ')[^1].Trim(), CultureInfo.InvariantCulture))
            .ToList();
        return values.Count == 0 ? null : values.Sum();
    }

    [Fact]
    public async Task MetricsAnswerWithoutASecretKeyInPrometheusTextFormat()
    {
        var scrape = await ScrapeAsync();

        Assert.Contains("# TYPE ", scrape);
    }

    [Fact]
    public async Task PostingReplayingAndRefusingReportsMoveTheirCounters()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "calls", "fixed", "requests", (0, 1));
        var before = await ScrapeAsync();

        Assert.Equal(HttpStatusCode.Created, (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "m1", meter_slug = "calls" })).Status);
        Assert.Equal(HttpStatusCode.Created, (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "m1", meter_slug = "calls" })).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "m2", meter_slug = "nope" })).Status);
        var after = await ScrapeAsync();

        double Moved(string name, params string[] labels) => (Sample(after, name, labels) ?? 0) - (Sample(before, name, labels) ?? 0);
        Assert.True(Moved("lava_reports_total", "outcome=\"posted\"") >= 1, after);
        Assert.True(Moved("lava_reports_total", "outcome=\"replayed\"") >= 1, after);
        Assert.True(Moved("lava_reports_total", "outcome=\"refused\"", "reason=\"not_found\"") >= 1, after);
        Assert.True(Moved("lava_reports_post_duration_seconds_count") >= 3, after);
        Assert.True(Moved("lava_group_commit_batch_size_count") >= 1, after);
        Assert.True(Moved("lava_group_commit_wait_duration_seconds_count") >= 1, after);
        Assert.NotNull(Sample(after, "lava_group_commit_queue_depth"));
        // Npgsql's own: the pool's connections by state.
        Assert.True(Sample(after, "db_client_connection_count") >= 1, after);
    }

    [Fact]
    public async Task AnOpenHoldIsCountedFromTheDatabase()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.GrantAsync(m.MerchantId, customer, 10m);

        Assert.Equal(HttpStatusCode.Created, (await m.Client.PostJsonAsync("/v1/holds", new { customer_id = customer, amount = "1" })).Status);

        var scrape = await ScrapeAsync();
        var database = new Npgsql.NpgsqlConnectionStringBuilder(App.ConnectionString).Database;
        Assert.Equal(1, Sample(scrape, "lava_holds_open", $"db_namespace=\"{database}\""));
    }
}

/// <summary>The service with <c>Metrics:Urls</c> set: /metrics belongs to that port alone.</summary>
public sealed class MetricsPortLavaApp : LavaApp
{
    protected override void ConfigureTestServices(IWebHostBuilder builder) => builder.UseSetting("Metrics:Urls", "http://127.0.0.1:19464");
}

public class MetricsPortTests(MetricsPortLavaApp app) : IClassFixture<MetricsPortLavaApp>
{
    [Fact]
    public async Task WithAMetricsPortTheServicePortDoesNotServeMetrics()
    {
        var response = await app.CreateClient().GetAsync(Observability.Path);

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }
}
