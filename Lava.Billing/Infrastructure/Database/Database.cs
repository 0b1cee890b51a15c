using Dapper;
using Npgsql;

namespace Lava.Billing.Infrastructure.Database;

/// <summary>The primary data source, and where reads that may lag (exports, analytics) are sent.</summary>
public sealed class ReadDataSource(NpgsqlDataSource source)
{
    public NpgsqlDataSource Source => source;
}

public static class Database
{
    public static IServiceCollection AddLavaDatabase(this IServiceCollection services, IConfiguration configuration)
    {
        DefaultTypeMap.MatchNamesWithUnderscores = true;
        var primary = configuration.GetConnectionString("Billing");
        if (string.IsNullOrWhiteSpace(primary))
        {
            throw new InvalidOperationException(
                "ConnectionStrings__Billing is not set. Start the service with scripts/run.sh, which sets up a local PostgreSQL.");
        }
        // Registers NpgsqlDataSource (and NpgsqlConnection, DbDataSource) with the host's logger factory, so Npgsql's own
        // warnings reach the service's log. The name labels its pool in /metrics (instead of the connection string).
        services.AddNpgsqlDataSource(WithDefaults(primary, "lava-billing"), b => b.Name = "lava-billing");
        services.AddSingleton(sp =>
        {
            var readOnly = sp.GetRequiredService<IConfiguration>().GetConnectionString("BillingReadOnly");
            return string.IsNullOrWhiteSpace(readOnly)
                ? new ReadDataSource(sp.GetRequiredService<NpgsqlDataSource>())
                : new ReadDataSource(Build(readOnly, "lava-billing-ro"));
        });
        services.AddSingleton<Migrator>();
        return services;
    }

    private static NpgsqlDataSource Build(string connectionString, string applicationName) =>
        new NpgsqlDataSourceBuilder(WithDefaults(connectionString, applicationName)) { Name = applicationName }.Build();

    private static string WithDefaults(string connectionString, string applicationName)
    {
        var csb = new NpgsqlConnectionStringBuilder(connectionString);
        csb.ApplicationName ??= applicationName;
        // Bounded like everything else: a pool sized for a small machine, and no statement runs forever.
        if (!connectionString.Contains("Maximum Pool Size", StringComparison.OrdinalIgnoreCase)) csb.MaxPoolSize = 64;
        if (!connectionString.Contains("Command Timeout", StringComparison.OrdinalIgnoreCase)) csb.CommandTimeout = 30;
        // The hot path repeats the same few statements: preparing them halves PostgreSQL's CPU per report
        // (docs/BENCHMARKS.md, "Where time goes").
        if (!connectionString.Contains("Auto Prepare", StringComparison.OrdinalIgnoreCase)) csb.MaxAutoPrepare = 32;
        // Npgsql otherwise resets every pooled connection when it is opened again (DISCARD ALL, or seven statements when
        // prepared ones exist): one more round of work per transaction for state this service never leaves behind. Its
        // settings are SET LOCAL and its advisory locks transaction-scoped; the one session lock (Migrator) is
        // released in a finally, and a connection that broke is not returned to the pool.
        if (!connectionString.Contains("Reset On Close", StringComparison.OrdinalIgnoreCase)) csb.NoResetOnClose = true;
        return csb.ConnectionString;
    }
}
