using Dapper;
using Lava.Billing.Tests.Infrastructure;
using Npgsql;

namespace Lava.Billing.Tests.Requests;

/// <summary>
/// The posting's plans of <see cref="ReportPlanTests"/> on a freshly migrated database that nothing has analysed: a young
/// database is where a plan that trusts statistics goes wrong (a table never analysed is estimated from its size alone,
/// so a whole-table read can look as cheap as a lookup), and bench runs on fresh databases swung tenfold from one run to
/// the next while autovacuum had not caught up. Autovacuum is off for this database's tables before any row is written,
/// and the test checks that no table has been analysed when the statements are explained.
/// </summary>
public class ReportPlanUnanalysedTests(LavaApp app) : ReportPlanTests(app)
{
    public override async Task InitializeAsync()
    {
        await base.InitializeAsync();
        await using var connection = new NpgsqlConnection(App.ConnectionString);
        var tables = await connection.QueryAsync<string>("SELECT format('%I.%I', schemaname, relname) FROM pg_stat_user_tables");
        foreach (var table in tables) await connection.ExecuteAsync($"ALTER TABLE {table} SET (autovacuum_enabled = false)");
    }

    protected override async Task StatisticsAsync(NpgsqlConnection connection)
    {
        var analysed = await connection.QueryAsync<string>("""
            SELECT relname FROM pg_stat_user_tables
             WHERE last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL OR analyze_count + autoanalyze_count > 0
            """);
        Assert.Empty(analysed);
    }

    // Nothing analysed: the posting caches no plan (a plan made from the tables' sizes alone can read them whole).
    protected override IEnumerable<string> PlannedAtEveryExecution =>
        Lava.Billing.Requests.Posting.LockedReads.All.Select(r => r.Name).Concat(["write", "write capturing holds"]);
}
