using System.Diagnostics.Metrics;
using Lava.Billing.Infrastructure.Observability;
using Npgsql;

namespace Lava.Billing.Credits;

/// <summary>
/// <c>lava_holds_open</c>: read from the database at each scrape rather than counted in memory, because holds also close
/// by expiring, which no code path sees, and because every instance serving the database reports the same number.
/// </summary>
public sealed class OpenHoldsGauge : IDisposable
{
    private const int TimeoutSeconds = 5;

    private const string CountSql = """
        SELECT count(*) FROM holds WHERE status = 'active' AND expires_at > now()
        """;

    private readonly IDisposable _registration;

    public OpenHoldsGauge(NpgsqlDataSource db, ILogger<OpenHoldsGauge> log) =>
        _registration = LavaMetrics.ObserveOpenHolds(() => Count(db, log));

    public void Dispose() => _registration.Dispose();

    // Synchronous: the exporter collects gauges synchronously. A database that does not answer costs the scrape this one
    // series, not the whole page.
    private static IEnumerable<Measurement<long>> Count(NpgsqlDataSource db, ILogger log)
    {
        try
        {
            using var command = db.CreateCommand(CountSql);
            command.CommandTimeout = TimeoutSeconds;
            var database = new NpgsqlConnectionStringBuilder(db.ConnectionString).Database;
            return [new Measurement<long>((long)command.ExecuteScalar()!, new KeyValuePair<string, object?>("db.namespace", database))];
        }
        catch (Exception e) when (e is NpgsqlException or ObjectDisposedException)
        {
            log.LogWarning("Open holds could not be counted for /metrics: {Failure}", e.Message);
            return [];
        }
    }
}
