using System.Net.Http.Headers;
using Dapper;
using Lava.Billing.Merchants;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>The service on its own database, shared by the tests of one class (xunit class fixture).</summary>
public class LavaApp : WebApplicationFactory<Program>, IAsyncLifetime
{
    private string? _database;
    private IReadOnlyList<string>? _resetOrder;

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
        builder.ConfigureLogging(l => l.SetMinimumLevel(LogLevel.Warning).AddFilter("Microsoft.AspNetCore.Diagnostics", LogLevel.Error));
        ConfigureTestServices(builder);
    }

    protected virtual void ConfigureTestServices(IWebHostBuilder builder) { }

    /// <summary>
    /// Empties every table, children first (FK order read from the catalog, so a new table cannot be forgotten).
    /// Runs as superuser with triggers off: the ledger refuses DELETE to everybody else.
    /// </summary>
    public async Task ResetAsync()
    {
        await using var admin = new NpgsqlConnection(AdminConnectionString);
        await admin.OpenAsync();
        _resetOrder ??= await ResetOrderAsync(admin);
        var sql = "SET session_replication_role = replica;\n" +
                  string.Concat(_resetOrder.Select(t => $"DELETE FROM {t}{(SeededRows.TryGetValue(t, out var seeded) ? $" WHERE NOT ({seeded})" : "")};\n")) +
                  "SET session_replication_role = origin;";
        await admin.ExecuteAsync(sql);
    }

    /// <summary>Reference rows that migrations seed and every test expects, kept by the reset.</summary>
    private static readonly Dictionary<string, string> SeededRows = new() { ["model_prices"] = "merchant_id = ''" };

    private static async Task<IReadOnlyList<string>> ResetOrderAsync(NpgsqlConnection admin)
    {
        var tables = (await admin.QueryAsync<string>("""
            SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relname <> 'schema_migrations'
            """)).ToList();
        var edges = (await admin.QueryAsync<(string Child, string Parent)>("""
            SELECT c.conrelid::regclass::text, c.confrelid::regclass::text FROM pg_constraint c
              JOIN pg_namespace n ON n.oid = c.connamespace
             WHERE c.contype = 'f' AND n.nspname = 'public' AND c.conrelid <> c.confrelid
            """)).ToList();
        var order = new List<string>();
        var remaining = new HashSet<string>(tables);
        while (remaining.Count > 0)
        {
            // A table can go once no remaining table references it.
            var next = remaining.Where(t => !edges.Any(e => e.Parent == t && e.Child != t && remaining.Contains(e.Child))).OrderBy(t => t).ToList();
            if (next.Count == 0) throw new InvalidOperationException("Foreign keys form a cycle: " + string.Join(", ", remaining));
            order.AddRange(next);
            remaining.ExceptWith(next);
        }
        return order;
    }

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
