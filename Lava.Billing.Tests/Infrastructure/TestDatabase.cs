using Dapper;
using Lava.Billing.Infrastructure.Database;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>
/// The PostgreSQL that scripts/test.sh started. Migrations run once into a template database; every test class gets
/// its own copy of it (CREATE DATABASE … TEMPLATE, a few ms), so classes run in parallel without sharing rows.
/// </summary>
public static class TestDatabase
{
    private static readonly SemaphoreSlim TemplateLock = new(1, 1);
    private static bool _templateReady;
    private static int _counter;

    public static string OwnerConnectionString => Environment.GetEnvironmentVariable("LAVA_TEST_DB")
        ?? throw new InvalidOperationException("LAVA_TEST_DB is not set: run the suite with scripts/test.sh, which starts PostgreSQL.");

    public static string AdminConnectionString => Environment.GetEnvironmentVariable("LAVA_TEST_ADMIN_DB")
        ?? throw new InvalidOperationException("LAVA_TEST_ADMIN_DB is not set: run the suite with scripts/test.sh.");

    private static string Owner => new NpgsqlConnectionStringBuilder(OwnerConnectionString).Username!;

    public static string For(string connectionString, string database, bool pooling = true) =>
        new NpgsqlConnectionStringBuilder(connectionString) { Database = database, Pooling = pooling, MaxPoolSize = 30 }.ConnectionString;

    public static async Task<string> CreateAsync()
    {
        await EnsureTemplateAsync();
        var name = $"lava_t{Environment.ProcessId}_{Interlocked.Increment(ref _counter)}";
        await using var admin = new NpgsqlConnection(AdminConnectionString);
        await admin.ExecuteAsync($"CREATE DATABASE {name} TEMPLATE lava_template OWNER {Owner}");
        return name;
    }

    /// <summary>A database with no migration applied, for tests of the migrations themselves; drop it with <see cref="DropAsync"/>.</summary>
    public static async Task<string> CreateEmptyAsync()
    {
        var name = $"lava_mig_{Guid.NewGuid():N}";
        await using var admin = new NpgsqlConnection(AdminConnectionString);
        await admin.ExecuteAsync($"CREATE DATABASE {name} OWNER {Owner}");
        return name;
    }

    /// <summary>
    /// Applies the migrations <paramref name="which"/> selects (by version) to a database made by
    /// <see cref="CreateEmptyAsync"/>, each in its own transaction as the Migrator applies them, without recording them:
    /// a migration test stops before the script it tests, writes rows in the old shape, then applies the rest.
    /// </summary>
    public static async Task ApplyMigrationsAsync(string database, Func<int, bool> which)
    {
        await using var c = new NpgsqlConnection(For(OwnerConnectionString, database));
        await c.OpenAsync();
        foreach (var script in Migrator.Scripts.Where(s => which(s.Version)))
        {
            await using var tx = await c.BeginTransactionAsync();
            await c.ExecuteAsync(script.Sql, transaction: tx, commandTimeout: 120);
            await tx.CommitAsync();
        }
    }

    public static async Task DropAsync(string database)
    {
        NpgsqlConnection.ClearAllPools();
        await using var admin = new NpgsqlConnection(AdminConnectionString);
        await admin.ExecuteAsync($"DROP DATABASE IF EXISTS {database} WITH (FORCE)");
    }

    private static async Task EnsureTemplateAsync()
    {
        await TemplateLock.WaitAsync();
        try
        {
            if (_templateReady) return;
            await using (var admin = new NpgsqlConnection(AdminConnectionString))
            {
                await admin.ExecuteAsync("DROP DATABASE IF EXISTS lava_template WITH (FORCE)");
                await admin.ExecuteAsync($"CREATE DATABASE lava_template OWNER {Owner}");
            }
            // Unpooled: a template database must have no open connections when it is copied.
            await using (var source = NpgsqlDataSource.Create(For(OwnerConnectionString, "lava_template", pooling: false)))
            {
                await new Migrator(source, NullLogger<Migrator>.Instance).MigrateAsync(CancellationToken.None);
            }
            _templateReady = true;
        }
        finally
        {
            TemplateLock.Release();
        }
    }
}
