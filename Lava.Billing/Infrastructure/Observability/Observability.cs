using Lava.Billing.Infrastructure.Http;
using Npgsql;
using OpenTelemetry.Metrics;

namespace Lava.Billing.Infrastructure.Observability;

/// <summary>Metrics settings (configuration section <c>Metrics</c>).</summary>
public sealed class MetricsOptions
{
    /// <summary>Off: no <c>/metrics</c> and no instruments are collected.</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>
    /// Where <c>/metrics</c> is served, e.g. <c>http://127.0.0.1:9464</c> (several separated by ';'). The service listens
    /// there as well, and <c>/metrics</c> answers only on those ports. Unset: on the service's own port.
    /// </summary>
    public string? Urls { get; init; }

    public IReadOnlyList<int> Ports() =>
        string.IsNullOrWhiteSpace(Urls) ? [] : Urls.Split(';', StringSplitOptions.RemoveEmptyEntries).Select(u => new Uri(u.Trim()).Port).ToList();
}

/// <summary>
/// <c>/metrics</c> in Prometheus' text format through OpenTelemetry: the service's own instruments
/// (<see cref="LavaMetrics"/>), Npgsql's (connection pool, command durations) and ASP.NET Core's (requests, Kestrel
/// connections). It sits outside <c>/v1</c>, so no secret key is asked for: bind it to a port the public cannot reach.
/// </summary>
public static class Observability
{
    public const string Path = "/metrics";

    public static WebApplicationBuilder AddLavaMetrics(this WebApplicationBuilder builder)
    {
        var options = builder.Configuration.GetSection("Metrics").Get<MetricsOptions>() ?? new MetricsOptions();
        builder.Services.AddSingleton(options);
        if (!options.Enabled) return builder;
        if (options.Ports().Count > 0)
        {
            // Listen on the metrics addresses too, keeping whatever --urls (or ASPNETCORE_URLS) already asked for.
            var urls = builder.Configuration[WebHostDefaults.ServerUrlsKey];
            builder.WebHost.UseSetting(WebHostDefaults.ServerUrlsKey,
                string.Join(';', new[] { string.IsNullOrWhiteSpace(urls) ? "http://localhost:5000" : urls, options.Urls! }));
        }
        builder.Services.AddOpenTelemetry().WithMetrics(metrics => metrics
            .AddMeter(LavaMetrics.MeterName, "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel")
            .AddNpgsqlInstrumentation()
            // No response cache: a scrape sees the counters as they are (scrapes come every few seconds at most).
            .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0));
        return builder;
    }

    /// <summary>Maps <see cref="Path"/>, answered on the metrics ports only when <see cref="MetricsOptions.Urls"/> names some.</summary>
    public static WebApplication MapLavaMetrics(this WebApplication app)
    {
        var options = app.Services.GetRequiredService<MetricsOptions>();
        if (!options.Enabled) return app;
        var ports = options.Ports();
        var endpoint = app.MapPrometheusScrapingEndpoint(Path);
        if (ports.Count == 0) return app;
        // By the local port the connection came in on, not the Host header, which the caller chooses. Elsewhere the
        // path does not exist.
        endpoint.Add(e =>
        {
            var scrape = e.RequestDelegate!;
            e.RequestDelegate = context => ports.Contains(context.Connection.LocalPort)
                ? scrape(context)
                : Problems.RouteNotFound().ExecuteAsync(context);
        });
        return app;
    }
}
