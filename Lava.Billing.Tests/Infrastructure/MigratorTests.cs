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

    private static Migrator.Script AddColumn(string column)
    {
        var sql = $"ALTER TABLE merchants ADD COLUMN {column} integer";
        return new Migrator.Script(100_000, "100000_test_add_column.sql", sql, Migrator.SqlChecksum(sql));
    }

    /// <summary>A transaction that has read <c>merchants</c> and stays open, as a long export does with its tables.</summary>
    private static async Task<(NpgsqlConnection Connection, NpgsqlTransaction Transaction)> HoldReadAsync(NpgsqlDataSource source)
    {
        var connection = await source.OpenConnectionAsync();
        var tx = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync("SELECT count(*) FROM merchants", transaction: tx);
        return (connection, tx);
    }

    private static async Task<bool> HasColumnAsync(NpgsqlConnection c, string column) =>
        await c.ExecuteScalarAsync<bool>(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'merchants' AND column_name = @column)", new { column });

    [Fact]
    public async Task AMigrationWaitingBehindALongReadGivesWayToTheTablesOtherUsersAndAppliesOnceTheReadEnds()
    {
        await using var source = Source();
        await new Migrator(source, NullLogger<Migrator>.Instance).MigrateAsync(CancellationToken.None);
        var (holder, read) = await HoldReadAsync(source);
        var migrator = new Migrator(source, NullLogger<Migrator>.Instance,
            new MigrationOptions { LockTimeoutMs = 200, Attempts = 1_000, RetryDelayMs = 50 });
        var migrating = migrator.MigrateAsync([.. Migrator.Scripts, AddColumn("waits_its_turn")], CancellationToken.None);

        await using var other = await source.OpenConnectionAsync();
        // The ALTER TABLE queues behind the open read; wait until it does.
        var queued = false;
        for (var i = 0; i < 500 && !queued; i++)
        {
            queued = await other.ExecuteScalarAsync<bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'ALTER TABLE merchants%')");
            if (!queued) await Task.Delay(20);
        }
        Assert.True(queued);
        // Any later read of the table queues behind the ALTER TABLE's request. Without a lock timeout it would wait for the
        // open read to end, which here ends only after it: the statement timeout would cancel it.
        await other.ExecuteAsync("SET statement_timeout = '20s'");
        Assert.Equal(0, await other.ExecuteScalarAsync<long>("SELECT count(*) FROM merchants WHERE merchant_id IS NULL"));
        Assert.False(migrating.IsCompleted);

        await read.CommitAsync();
        await holder.DisposeAsync();
        Assert.Equal(1, await migrating);
        Assert.True(await HasColumnAsync(other, "waits_its_turn"));
    }

    [Fact]
    public async Task AMigrationThatNeverGetsItsLockFailsNamingItselfAndAppliesNothing()
    {
        await using var source = Source();
        await new Migrator(source, NullLogger<Migrator>.Instance).MigrateAsync(CancellationToken.None);
        var (holder, read) = await HoldReadAsync(source);
        await using (holder)
        {
            var migrator = new Migrator(source, NullLogger<Migrator>.Instance,
                new MigrationOptions { LockTimeoutMs = 100, Attempts = 3, RetryDelayMs = 0 });
            var error = await Assert.ThrowsAsync<InvalidOperationException>(
                () => migrator.MigrateAsync([.. Migrator.Scripts, AddColumn("never_added")], CancellationToken.None));
            Assert.Contains("100000_test_add_column.sql", error.Message);
            Assert.Contains("3 attempts", error.Message);
            await read.RollbackAsync();
        }
        await using var c = await source.OpenConnectionAsync();
        Assert.False(await HasColumnAsync(c, "never_added"));
        Assert.Equal(0, await c.ExecuteScalarAsync<int>("SELECT count(*) FROM schema_migrations WHERE version = 100000"));
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
