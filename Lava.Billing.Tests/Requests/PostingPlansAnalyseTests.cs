using Dapper;
using Lava.Billing.Requests.Posting;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Lava.Billing.Tests.Requests;

/// <summary>
/// A table the posting reads that holds rows its statistics have not counted is analysed by the service, so its
/// statements run their cached plans without waiting for autovacuum's next round (which comes a minute apart by default:
/// on a young ledger, the difference between the planning cost of every report and none). On this class's own database,
/// with autovacuum off for the tables it looks at, so that only the service can have analysed them.
/// </summary>
public class PostingPlansAnalyseTests(LavaApp app) : ApiTest(app)
{
    private const string Counts = """
        SELECT relname, analyze_count FROM pg_stat_user_tables WHERE relname = ANY(@Tables)
        """;

    private PostingPlans Plans(bool analyse, TimeProvider? clock = null) => new(App.Services.GetRequiredService<NpgsqlDataSource>(),
        new BillingOptions { AnalyseUnsettledTables = analyse }, clock ?? TimeProvider.System, NullLogger<PostingPlans>.Instance);

    /// <summary>
    /// Waits until the statistics count every live row of <paramref name="table"/>. A backend reports what it wrote up to a
    /// second or more after it goes idle (the reset's deletes before each test among them), and a count reported after an
    /// ANALYZE is added to what it counted: the rows the test inserts could be cancelled out by deletes reported late.
    /// </summary>
    private static async Task CountedAsync(NpgsqlConnection admin, string table)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (true)
        {
            await admin.ExecuteAsync("SELECT pg_stat_clear_snapshot()");
            var (live, rows) = await admin.QuerySingleAsync<(long Live, long Rows)>(
                $"SELECT (SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = '{table}'), (SELECT count(*) FROM {table})");
            if (live == rows) return;
            Assert.True(DateTime.UtcNow < deadline, $"{table}: the statistics count {live} live rows of {rows} after 30 s");
            await Task.Delay(200);
        }
    }

    /// <summary>
    /// Customers analysed, then 200 rows more: unsettled, and enough to analyse. Autovacuum is off for the table, so only
    /// the service can have analysed it since.
    /// </summary>
    private static async Task UnsettledCustomersAsync(NpgsqlConnection admin, string merchantId, string prefix)
    {
        await admin.ExecuteAsync("ALTER TABLE customers SET (autovacuum_enabled = false)");
        await CountedAsync(admin, "customers");
        await admin.ExecuteAsync("""
            ANALYZE customers;
            INSERT INTO customers (merchant_id, customer_id) SELECT @m, @prefix || i FROM generate_series(1, 200) AS i;
            SELECT pg_stat_force_next_flush();
            """, new { m = merchantId, prefix });
        await CountedAsync(admin, "customers");
    }

    /// <summary>How often customers has been analysed, by anyone, as the statistics say now.</summary>
    private static async Task<long> CustomerAnalysesAsync(NpgsqlConnection admin)
    {
        await admin.ExecuteAsync("SELECT pg_stat_clear_snapshot()");
        return await admin.QuerySingleAsync<long>("SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'customers'");
    }

    private sealed class ManualClock : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = DateTimeOffset.UtcNow;
        public override DateTimeOffset GetUtcNow() => Now;
    }

    [Fact]
    public async Task ATableWithRowsItsStatisticsHaveNotCountedIsAnalysedOnceAndItsReadsRunTheirCachedPlans()
    {
        var m = await App.NewMerchantAsync();
        await using var admin = new NpgsqlConnection(App.AdminConnectionString);
        await admin.ExecuteAsync("""
            ALTER TABLE customers SET (autovacuum_enabled = false);
            ALTER TABLE meters SET (autovacuum_enabled = false);
            """);
        await CountedAsync(admin, "customers");
        await CountedAsync(admin, "meters");
        await admin.ExecuteAsync("ANALYZE customers, meters");
        // Customers: analysed empty, then 1,200 rows (unsettled, enough to analyse). Meters: one row (unsettled, too few: under 50).
        await admin.ExecuteAsync("""
            INSERT INTO customers (merchant_id, customer_id) SELECT @m, 'cus_analyse_' || i FROM generate_series(1, 1200) AS i;
            SELECT pg_stat_force_next_flush();
            """, new { m = m.MerchantId });
        await App.MeterAsync(m.MerchantId, "tokens", "fixed", "tokens_1m", (0, 1));
        await CountedAsync(admin, "customers");
        await CountedAsync(admin, "meters");
        string[] tables = ["customers", "meters"];
        async Task<Dictionary<string, long>> AnalysesAsync()
        {
            await admin.ExecuteAsync("SELECT pg_stat_clear_snapshot()");
            return (await admin.QueryAsync<(string Name, long Count)>(Counts, new { Tables = tables })).ToDictionary(r => r.Name, r => r.Count);
        }
        var before = await AnalysesAsync();

        // Turned off, nothing is analysed, and the customers' reads are planned for their keys.
        var off = Plans(analyse: false);
        await off.RefreshAsync(CancellationToken.None);
        Assert.False(off.Generic(["customers"]));
        Assert.Equal(before, await AnalysesAsync());

        var on = Plans(analyse: true);
        await on.RefreshAsync(CancellationToken.None);
        var after = await AnalysesAsync();
        Assert.Equal(before["customers"] + 1, after["customers"]);
        Assert.Equal(before["meters"], after["meters"]);
        Assert.True(on.Generic(["customers"]), "the customers' reads still planned for their keys after the analyse");
        Assert.False(on.Generic(["meters"]));

        // Settled now: the next refresh analyses nothing.
        await on.RefreshAsync(CancellationToken.None);
        Assert.Equal(after, await AnalysesAsync());
    }

    [Fact]
    public async Task ATableAnotherSessionIsAnalysingIsPassedOverWithoutWaitingAndTriedAgainAfterFiveSeconds()
    {
        var m = await App.NewMerchantAsync();
        await using var admin = new NpgsqlConnection(App.AdminConnectionString);
        await UnsettledCustomersAsync(admin, m.MerchantId, "cus_locked_");
        var before = await CustomerAnalysesAsync(admin);
        var clock = new ManualClock();
        var plans = Plans(analyse: true, clock);

        // Another session holds the lock an ANALYZE takes (as autovacuum, or another instance analysing it, would).
        await using (var holder = new NpgsqlConnection(App.AdminConnectionString))
        {
            await holder.OpenAsync();
            await using var tx = await holder.BeginTransactionAsync();
            await holder.ExecuteAsync("LOCK TABLE customers IN SHARE UPDATE EXCLUSIVE MODE", transaction: tx);
            var refresh = plans.RefreshAsync(CancellationToken.None);
            Assert.Same(refresh, await Task.WhenAny(refresh, Task.Delay(TimeSpan.FromSeconds(10))));
            await refresh;
            Assert.False(plans.Generic(["customers"]));
            Assert.Equal(before, await CustomerAnalysesAsync(admin));
        }

        // Free again, but tried within 5 seconds: left alone. After them: analysed.
        clock.Now += PostingPlans.AnalyseAtMostEvery - TimeSpan.FromSeconds(1);
        await plans.RefreshAsync(CancellationToken.None);
        Assert.Equal(before, await CustomerAnalysesAsync(admin));
        clock.Now += TimeSpan.FromSeconds(2);
        await plans.RefreshAsync(CancellationToken.None);
        Assert.Equal(before + 1, await CustomerAnalysesAsync(admin));
        Assert.True(plans.Generic(["customers"]));
    }

    [Fact]
    public async Task ARoleThatOwnsNeitherTheTablesNorTheDatabaseLeavesThemToAutovacuumAndAMemberOfTheOwnerAnalysesThem()
    {
        var m = await App.NewMerchantAsync();
        await using var admin = new NpgsqlConnection(App.AdminConnectionString);
        await UnsettledCustomersAsync(admin, m.MerchantId, "cus_role_");
        var before = await CustomerAnalysesAsync(admin);

        // Roles are the cluster's: a name of this test's own, dropped after it.
        var role = "lava_plans_" + Guid.NewGuid().ToString("N")[..12];
        await admin.ExecuteAsync($"CREATE ROLE {role} LOGIN PASSWORD '{role}_pw'");
        try
        {
            await using var source = NpgsqlDataSource.Create(new NpgsqlConnectionStringBuilder(App.ConnectionString)
                { Username = role, Password = role + "_pw", Pooling = false }.ConnectionString);
            async Task<List<PostingPlans.TableRow>> ReadAsync()
            {
                await using var c = await source.OpenConnectionAsync();
                return await PostingPlans.ReadStatisticsAsync(c, CancellationToken.None);
            }
            var plans = new PostingPlans(source, new BillingOptions { AnalyseUnsettledTables = true }, new ManualClock(),
                NullLogger<PostingPlans>.Instance);

            var rows = await ReadAsync();
            Assert.Equal(PostingPlans.Tables.Count, rows.Count);
            Assert.All(rows, r => Assert.False(r.MayAnalyse, r.Name));
            await plans.RefreshAsync(CancellationToken.None);
            Assert.Equal(before, await CustomerAnalysesAsync(admin));
            Assert.False(plans.Generic(["customers"]));

            var owner = new NpgsqlConnectionStringBuilder(App.ConnectionString).Username;
            await admin.ExecuteAsync($"GRANT \"{owner}\" TO {role}");
            Assert.All(await ReadAsync(), r => Assert.True(r.MayAnalyse, r.Name));
            await plans.RefreshAsync(CancellationToken.None);
            Assert.Equal(before + 1, await CustomerAnalysesAsync(admin));
            Assert.True(plans.Generic(["customers"]));
        }
        finally
        {
            await admin.ExecuteAsync($"DROP ROLE {role}");
        }
    }

    [Fact]
    public void OnlyAnUnsettledTableOfFiftyRowsOrMoreThisRoleMayAnalyseAndNotAnalysedJustNowIsAnalysed()
    {
        PostingPlans.TableRow[] tables =
        [
            new("never_analysed", false, -1, 50, true),
            new("analysed_empty_since_written", true, 0, 5_000, true),
            new("doubled", true, 1_000, 2_001, true),
            // After a failover or a reset of the statistics: its analyse forgotten, its live count from nothing, its count kept.
            new("statistics_reset", false, 5_000, 0, true),
            new("too_few_rows", false, -1, 49, true),
            new("settled", true, 1_000, 2_000, true),
            new("settled_empty", true, 0, 0, true),
            new("analysed_just_now", true, 1_000, 9_000, true),
            new("not_this_roles_to_analyse", true, 1_000, 9_000, false),
        ];
        Assert.Equal(["analysed_empty_since_written", "doubled", "never_analysed", "statistics_reset"],
            PostingPlans.ToAnalyse(tables, name => name == "analysed_just_now"));
    }
}
