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

    private PostingPlans Plans(bool analyse) => new(App.Services.GetRequiredService<NpgsqlDataSource>(),
        new BillingOptions { AnalyseUnsettledTables = analyse }, TimeProvider.System, NullLogger<PostingPlans>.Instance);

    [Fact]
    public async Task ATableWithRowsItsStatisticsHaveNotCountedIsAnalysedOnceAndItsReadsRunTheirCachedPlans()
    {
        var m = await App.NewMerchantAsync();
        await using var admin = new NpgsqlConnection(App.AdminConnectionString);
        await admin.ExecuteAsync("""
            ALTER TABLE customers SET (autovacuum_enabled = false);
            ALTER TABLE meters SET (autovacuum_enabled = false);
            ANALYZE customers, meters;
            """);
        // Customers: analysed empty, then 1,200 rows (unsettled, enough to analyse). Meters: one row (unsettled, too few: under 50).
        await admin.ExecuteAsync("""
            INSERT INTO customers (merchant_id, customer_id) SELECT @m, 'cus_analyse_' || i FROM generate_series(1, 1200) AS i;
            SELECT pg_stat_force_next_flush();
            """, new { m = m.MerchantId });
        await App.MeterAsync(m.MerchantId, "tokens", "fixed", "tokens_1m", (0, 1));
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
    public void OnlyAnUnsettledTableOfFiftyRowsOrMoreNotAnalysedJustNowIsAnalysed()
    {
        (string, bool, double, long)[] tables =
        [
            ("never_analysed", false, -1, 50),
            ("analysed_empty_since_written", true, 0, 5_000),
            ("doubled", true, 1_000, 2_001),
            ("too_few_rows", false, -1, 49),
            ("settled", true, 1_000, 2_000),
            ("settled_empty", true, 0, 0),
            ("analysed_just_now", true, 1_000, 9_000),
        ];
        Assert.Equal(["analysed_empty_since_written", "doubled", "never_analysed"],
            PostingPlans.ToAnalyse(tables, name => name == "analysed_just_now"));
    }
}
