using Dapper;
using Lava.Billing.Infrastructure.Database;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Lava.Billing.Tests.Infrastructure;

public class MigratorTests : IAsyncLifetime
{
    private string _database = "";

    public async Task InitializeAsync() => _database = await TestDatabase.CreateEmptyAsync();

    public Task DisposeAsync() => TestDatabase.DropAsync(_database);

    private NpgsqlDataSource Source() => NpgsqlDataSource.Create(TestDatabase.For(TestDatabase.OwnerConnectionString, _database));

    [Fact]
    public async Task TwoInstancesMigratingAtOnceApplyEachFileOnce()
    {
        await using var a = Source();
        await using var b = Source();
        var counts = await Task.WhenAll(
            new Migrator(a, NullLogger<Migrator>.Instance).MigrateAsync(CancellationToken.None),
            new Migrator(b, NullLogger<Migrator>.Instance).MigrateAsync(CancellationToken.None));
        Assert.Equal(Migrator.Scripts.Count, counts.Sum());
        await using var c = await a.OpenConnectionAsync();
        Assert.Equal(Migrator.Scripts.Count, await c.ExecuteScalarAsync<int>("SELECT count(*) FROM schema_migrations"));
        Assert.Equal(0, await new Migrator(a, NullLogger<Migrator>.Instance).MigrateAsync(CancellationToken.None));
    }

    [Fact]
    public async Task StartUpRefusesWhenAnAppliedFileChanged()
    {
        await using var source = Source();
        var migrator = new Migrator(source, NullLogger<Migrator>.Instance);
        await migrator.MigrateAsync(CancellationToken.None);
        await using (var c = await source.OpenConnectionAsync())
            await c.ExecuteAsync("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1");
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => migrator.MigrateAsync(CancellationToken.None));
        Assert.Contains("0001_foundation.sql", error.Message);
    }

    [Fact]
    public async Task ADatabaseThatRecordedWholeFileChecksumsMigratesAndIsUpgradedToSqlChecksums()
    {
        await using var source = Source();
        var migrator = new Migrator(source, NullLogger<Migrator>.Instance);
        await migrator.MigrateAsync(CancellationToken.None);
        await using (var c = await source.OpenConnectionAsync())
        {
            // As a database migrated before the comments were reworded recorded them.
            foreach (var script in Migrator.Scripts)
            {
                var old = Migrator.CommentOnlyRewrites.TryGetValue(script.Version, out var rewrite) ? rewrite.WholeFile : Migrator.WholeFileChecksum(script.Sql);
                await c.ExecuteAsync("UPDATE schema_migrations SET checksum = @old WHERE version = @v", new { old, v = script.Version });
            }
        }

        Assert.Equal(0, await migrator.MigrateAsync(CancellationToken.None));

        await using var check = await source.OpenConnectionAsync();
        var recorded = (await check.QueryAsync<(int Version, string Checksum)>("SELECT version, checksum FROM schema_migrations")).ToDictionary(r => r.Version, r => r.Checksum);
        Assert.All(Migrator.Scripts, s => Assert.Equal(s.Checksum, recorded[s.Version]));
    }

    [Fact]
    public async Task AWholeFileChecksumOfDifferentSqlIsStillRefused()
    {
        await using var source = Source();
        var migrator = new Migrator(source, NullLogger<Migrator>.Instance);
        await migrator.MigrateAsync(CancellationToken.None);
        await using (var c = await source.OpenConnectionAsync())
            await c.ExecuteAsync("UPDATE schema_migrations SET checksum = @old WHERE version = 1", new { old = Migrator.WholeFileChecksum("SELECT 1") });
        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => migrator.MigrateAsync(CancellationToken.None));
        Assert.Contains("0001_foundation.sql", error.Message);
    }

    [Fact]
    public void EveryDocumentedRewriteChangedCommentsOnly()
    {
        Assert.NotEmpty(Migrator.CommentOnlyRewrites);
        foreach (var (version, rewrite) in Migrator.CommentOnlyRewrites)
            Assert.Equal(rewrite.Sql, Migrator.Scripts.Single(s => s.Version == version).Checksum);
    }

    [Fact]
    public void TheChecksumIgnoresWholeLineCommentsAndNothingElse()
    {
        Assert.Equal(Migrator.SqlChecksum("-- one reason\nSELECT 1;\n"), Migrator.SqlChecksum("  -- another reason\r\nSELECT 1;\r\n"));
        Assert.NotEqual(Migrator.SqlChecksum("SELECT 1;"), Migrator.SqlChecksum("SELECT 2;"));
        Assert.NotEqual(Migrator.SqlChecksum("SELECT '--';"), Migrator.SqlChecksum("SELECT '-';"));
    }
}
