using System.Net.Http.Headers;
using Dapper;
using Lava.Billing.Merchants;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using Respawn;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>The service on its own database, shared by the tests of one class (xunit class fixture).</summary>
public class LavaApp : WebApplicationFactory<Program>, IAsyncLifetime
{
    private string? _database;
    private Respawner? _respawner;

    public string ConnectionString => TestDatabase.For(TestDatabase.OwnerConnectionString, _database!);
    public string AdminConnectionString => TestDatabase.For(TestDatabase.AdminConnectionString, _database!);

    public async Task InitializeAsync() => _database = await TestDatabase.CreateAsync();

    async Task IAsyncLifetime.DisposeAsync()
    {
        await base.DisposeAsync();
        if (_database is not null) await TestDatabase.DropAsync(_database);
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        builder.UseSetting("ConnectionStrings:Billing", ConnectionString);
        builder.UseSetting("Database:MigrateOnStart", "false");
        // The plan tests hold the posting's plans on databases in given states of their statistics (never analysed,
        // analysed empty, analysed with rows), which a background ANALYZE would change under them; PostingPlansAnalyseTests
        // holds the analysing itself.
        builder.UseSetting("Billing:AnalyseUnsettledTables", "false");
        builder.ConfigureLogging(l => l.SetMinimumLevel(LogLevel.Warning).AddFilter("Microsoft.AspNetCore.Diagnostics", LogLevel.Error));
        ConfigureTestServices(builder);
    }

    protected virtual void ConfigureTestServices(IWebHostBuilder builder) { }

    /// <summary>
    /// Empties every table but the migrations' own through Respawn, keeping the reference rows migrations seed. Respawn
    /// reads the tables once per database. It runs as superuser with session_replication_role = replica, so neither the
    /// ledger's append-only triggers (which refuse DELETE and TRUNCATE to everybody) nor foreign-key triggers fire.
    /// </summary>
    public async Task ResetAsync()
    {
        await using var admin = new NpgsqlConnection(ResetConnectionString);
        await admin.OpenAsync();
        _respawner ??= await Respawner.CreateAsync(admin, ResetOptions);
        await _respawner.ResetAsync(admin);
    }

    // Its own pool, whose sessions start as replicas: no SET round trips before and after each reset.
    private string ResetConnectionString =>
        new NpgsqlConnectionStringBuilder(AdminConnectionString) { Options = "-c session_replication_role=replica" }.ConnectionString;

    /// <summary>Reference rows that migrations seed and every test expects, kept by the reset.</summary>
    private static readonly Dictionary<string, string> SeededRows = new() { ["model_prices"] = "merchant_id = ''" };

    private static readonly RespawnerOptions ResetOptions = new()
    {
        DbAdapter = DbAdapter.Postgres,
        SchemasToInclude = ["public"],
        TablesToIgnore = ["schema_migrations"],
        // DELETE rather than Respawn's default TRUNCATE … CASCADE: the tables hold a handful of rows between tests, and
        // truncating every table (new files for each table and index) costs several times more (README, "Test database
        // reset"). DELETE also keeps the seeded rows.
        FormatDeleteStatement = table => $"DELETE FROM \"{table.Name}\"" +
            (SeededRows.TryGetValue(table.Name, out var seeded) ? $" WHERE NOT ({seeded});" : ";"),
    };

    public sealed record Merchant(string MerchantId, string SecretKey, HttpClient Client);

    /// <summary>A fresh merchant with a client that sends its key.</summary>
    public async Task<Merchant> NewMerchantAsync(string name = "Test merchant")
    {
        var created = await Services.GetRequiredService<MerchantStore>().CreateAsync(name, CancellationToken.None);
        return new Merchant(created.MerchantId, created.SecretKey, ClientWithKey(created.SecretKey));
    }

    public HttpClient ClientWithKey(string? secretKey)
    {
        var client = CreateClient();
        if (secretKey is not null) client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", secretKey);
        return client;
    }

    public async Task<T> QueryAsync<T>(string sql, object? args = null)
    {
        await using var connection = new NpgsqlConnection(ConnectionString);
        return await connection.QuerySingleAsync<T>(sql, args);
    }
}

/// <summary>Base for API tests: one app per class, a clean database before every test.</summary>
public abstract class ApiTest(LavaApp app) : IClassFixture<LavaApp>, IAsyncLifetime
{
    protected LavaApp App { get; } = app;

    public virtual Task InitializeAsync() => App.ResetAsync();

    public virtual Task DisposeAsync() => Task.CompletedTask;
}
