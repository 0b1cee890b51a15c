using Dapper;
using Npgsql;

namespace Lava.Billing.Infrastructure.Database;

/// <summary>
/// Where reads that may lag (analytics) are sent, and <see cref="Exports"/>: a separate, small pool for reads that hold a
/// connection as long as their client reads (exports, statements), so slow readers can never take the connections
/// that reports post with.
/// </summary>
public sealed class ReadDataSource(NpgsqlDataSource source, NpgsqlDataSource exports)
{
    public NpgsqlDataSource Source => source;

    public NpgsqlDataSource Exports => exports;
}

/// <summary>Which pool a posting takes its connection from (<see cref="PostingConnections"/>).</summary>
public enum PostingPool
{
    /// <summary>The service's pool, which request handlers share: batches of reports.</summary>
    Shared,

    /// <summary>The posting's own: group commit's writers and the gateway's posting queue.</summary>
    Reserved,
}

/// <summary>
/// The connections usage reports are posted on. Group commit's writers and the gateway's posting queue are a fixed
/// few, so they get a pool of their own, sized for them: no flood of reads, batches or gateway admissions, and no
/// merchant's calls stuck behind held rows, can make a single report wait for a connection. Batches of reports are
/// posted on their callers' time and take the shared pool, within their merchant's turns
/// (<see cref="Http.MerchantLimits"/>).
/// </summary>
public sealed class PostingConnections(NpgsqlDataSource shared, NpgsqlDataSource reserved) : IAsyncDisposable
{
    public NpgsqlDataSource this[PostingPool pool] => pool == PostingPool.Reserved ? reserved : shared;

    public ValueTask DisposeAsync() => reserved.DisposeAsync();
}

/// <summary>Configuration section <c>Exports</c> (docs/exports.md, "Limits").</summary>
public sealed record ExportOptions
{
    /// <summary>Connections all streamed exports share (their own pool, apart from the primary's).</summary>
    [System.ComponentModel.DataAnnotations.Range(1, 1000)] public int MaxConnections { get; init; } = 8;

    /// <summary>Exports one secret key may run at once; beyond, 429 with Retry-After.</summary>
    [System.ComponentModel.DataAnnotations.Range(1, 1000)] public int MaxPerKey { get; init; } = 2;

    /// <summary>
    /// Exports one merchant may run at once, all its keys together; beyond, 429 with Retry-After. Unset, half of
    /// <see cref="MaxConnections"/> (at least one), so one merchant never holds the whole pool whatever its size.
    /// </summary>
    [System.ComponentModel.DataAnnotations.Range(1, 1000)] public int? MaxPerMerchant { get; init; }

    /// <summary><see cref="MaxPerMerchant"/>, or its default.</summary>
    public int PerMerchantLimit => MaxPerMerchant ?? Math.Max(1, MaxConnections / 2);

    /// <summary>An export whose client has not taken its bytes for this long is aborted.</summary>
    [System.ComponentModel.DataAnnotations.Range(1, 3600)] public int StallSeconds { get; init; } = 30;
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
        services.AddNpgsqlDataSource(WithDefaults(primary, "lava-billing"), b => b.UsePreparedStatementGuard().Name = "lava-billing");
        services.AddOptions<ExportOptions>().BindConfiguration("Exports").ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton(sp =>
        {
            var configuration = sp.GetRequiredService<IConfiguration>();
            var readOnly = configuration.GetConnectionString("BillingReadOnly");
            var exportConnections = sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<ExportOptions>>().Value.MaxConnections;
            var exportSource = string.IsNullOrWhiteSpace(readOnly) ? configuration.GetConnectionString("Billing")! : readOnly;
            var logs = sp.GetRequiredService<ILoggerFactory>();
            var exports = Build(exportSource, "lava-billing-export", logs, exportConnections);
            return string.IsNullOrWhiteSpace(readOnly)
                ? new ReadDataSource(sp.GetRequiredService<NpgsqlDataSource>(), exports)
                : new ReadDataSource(Build(readOnly, "lava-billing-ro", logs), exports);
        });
        services.AddOptions<MigrationOptions>().BindConfiguration("Database:Migrations").ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton(sp => new Migrator(sp.GetRequiredService<NpgsqlDataSource>(), sp.GetRequiredService<ILogger<Migrator>>(),
            sp.GetRequiredService<Microsoft.Extensions.Options.IOptions<MigrationOptions>>().Value));
        return services;
    }

    /// <summary>
    /// The postings' own pool beside <paramref name="shared"/>, for <paramref name="writers"/> that each hold one connection
    /// at a time, and one to spare for a connection being replaced; never more than the string allows the shared pool.
    /// </summary>
    public static PostingConnections PostingConnectionsBeside(NpgsqlDataSource shared, string connectionString, int writers,
        ILoggerFactory logs)
    {
        var size = Math.Max(writers, 1) + 1;
        if (IsSet(connectionString, "Maximum Pool Size")) size = Math.Min(size, new NpgsqlConnectionStringBuilder(connectionString).MaxPoolSize);
        return new PostingConnections(shared, Build(connectionString, "lava-billing-posting", logs, size));
    }

    // With the host's logger factory, as the primary's (AddNpgsqlDataSource), so Npgsql's warnings reach the service's log.
    private static NpgsqlDataSource Build(string connectionString, string applicationName, ILoggerFactory logs, int? maxPoolSize = null) =>
        new NpgsqlDataSourceBuilder(WithDefaults(connectionString, applicationName, maxPoolSize)) { Name = applicationName }
            .UseLoggerFactory(logs).UsePreparedStatementGuard().Build();

    /// <summary>
    /// Whether the string sets <paramref name="keyword"/> (its canonical name), under that name or any synonym
    /// (<c>MaxPoolSize</c>), in any case: Npgsql's builder writes every setting it was given under its canonical name, and
    /// the plain builder reads that back as keys and values, quoted values (a password with <c>;</c> in it) whole.
    /// </summary>
    internal static bool IsSet(string connectionString, string keyword) => Given(new NpgsqlConnectionStringBuilder(connectionString)).ContainsKey(keyword);

    private static System.Data.Common.DbConnectionStringBuilder Given(NpgsqlConnectionStringBuilder csb) => new() { ConnectionString = csb.ConnectionString };

    internal static string WithDefaults(string connectionString, string applicationName, int? maxPoolSize = null)
    {
        var csb = new NpgsqlConnectionStringBuilder(connectionString);
        var given = Given(csb);
        csb.ApplicationName ??= applicationName;
        // Bounded like everything else: a pool sized for a small machine, and no statement runs forever. A minimum the
        // string asks for above that default raises the maximum to it (Npgsql refuses a minimum above the maximum).
        if (!given.ContainsKey("Maximum Pool Size")) csb.MaxPoolSize = Math.Max(64, csb.MinPoolSize);
        if (!given.ContainsKey("Command Timeout")) csb.CommandTimeout = 30;
        // The hot path repeats the same few statements: preparing them halves PostgreSQL's CPU per report
        // (docs/BENCHMARKS.md, "Where time goes").
        if (!given.ContainsKey("Max Auto Prepare")) csb.MaxAutoPrepare = 32;
        // Npgsql otherwise resets every pooled connection when it is opened again (DISCARD ALL, or seven statements when
        // prepared ones exist): one more round of work per transaction for state this service never leaves behind. Its
        // settings are SET LOCAL and its advisory locks transaction-scoped; the one session lock (Migrator) is
        // released in a finally, and a connection that broke is not returned to the pool.
        if (!given.ContainsKey("No Reset On Close")) csb.NoResetOnClose = true;
        // The export and posting pools' sizes are their own, whatever the string they share with the primary says; a
        // minimum the string sets for the primary's pool is capped to fit.
        if (maxPoolSize is { } size)
        {
            csb.MaxPoolSize = size;
            csb.MinPoolSize = Math.Min(csb.MinPoolSize, size);
        }
        return csb.ConnectionString;
    }
}
