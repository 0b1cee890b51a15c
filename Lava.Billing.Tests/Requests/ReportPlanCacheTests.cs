using System.Net;
using Dapper;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Requests.Posting;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Requests;

/// <summary>One pooled connection, so that every report posts on the same session and its prepared statements' plans can be counted.</summary>
public abstract class PlanSessionApp : LavaApp
{
    /// <summary>The session's own settings (<c>-c name=value</c>), if any.</summary>
    protected abstract string? SessionOptions { get; }

    protected override void ConfigureTestServices(IWebHostBuilder builder) =>
        builder.UseSetting("ConnectionStrings:Billing", new NpgsqlConnectionStringBuilder(ConnectionString)
        {
            MaxPoolSize = 1,
            Options = SessionOptions,
        }.ConnectionString);

    /// <summary>The pool reports are posted on (one connection, as the shared pool's).</summary>
    public NpgsqlDataSource PostingSession => Services.GetRequiredService<PostingConnections>()[PostingPool.Reserved];

    /// <summary>
    /// A merchant with a meter and a customer, whatever <paramref name="arrange"/> adds for that merchant, the posting's
    /// view of the tables' statistics read again; then eight reports, one at a time, on a fresh session; then each
    /// prepared statement of that session with its plans so far.
    /// </summary>
    public async Task<List<(string Name, string Statement, long GenericPlans, long CustomPlans)>> PlansAfterReportsAsync(
        Func<string, Task>? arrange = null)
    {
        var m = await NewMerchantAsync();
        await this.MeterAsync(m.MerchantId, "tokens", "fixed", "tokens_1m", (0, 1));
        var customerId = await this.CustomerAsync(m.MerchantId);
        if (arrange is not null) await arrange(m.MerchantId);
        await Services.GetRequiredService<PostingPlans>().RefreshAsync(CancellationToken.None);
        var db = PostingSession;
        // A fresh session, so the statements' uses are counted from zero and they are prepared on the fifth.
        db.Clear();
        for (var i = 0; i < 8; i++)
        {
            var r = await m.Client.PostJsonAsync("/v1/requests",
                new { request_id = $"req_plan_{i}", customer_id = customerId, meter_slug = "tokens", input_tokens = 100, output_tokens = 10 });
            Assert.True(r.Status == HttpStatusCode.Created, $"report {i}: {(int)r.Status} {r.Body?.ToJsonString()}");
        }
        await using var connection = await db.OpenConnectionAsync();
        return (await connection.QueryAsync<(string, string, long, long)>(
            "SELECT name, statement, generic_plans, custom_plans FROM pg_prepared_statements")).AsList();
    }

    /// <summary>Of <paramref name="prepared"/>, the posting's locked reads, each with its read.</summary>
    public static List<(LockedRead Read, string Name, long GenericPlans, long CustomPlans)> Reads(
        IEnumerable<(string Name, string Statement, long GenericPlans, long CustomPlans)> prepared) =>
        prepared.SelectMany(p => LockedReads.All.Where(read => p.Statement.Trim() == read.Sql.Trim())
            .Select(read => (read, p.Name, p.GenericPlans, p.CustomPlans))).ToList();
}

/// <summary>
/// A session that would run every prepared statement with its cached generic plan, unless a transaction sets its own:
/// what PostgreSQL chooses by itself after five executions when the generic plan looks no dearer than the custom ones.
/// </summary>
public sealed class GenericPlanSessionApp : PlanSessionApp
{
    protected override string? SessionOptions => "-c plan_cache_mode=force_generic_plan";
}

/// <summary>A session with PostgreSQL's default plan cache mode (<c>auto</c>).</summary>
public sealed class DefaultPlanSessionApp : PlanSessionApp
{
    protected override string? SessionOptions => null;
}

/// <summary>
/// On a freshly migrated database the posting's locked reads and its write are planned for their values at every
/// execution, even in a session that would reuse a cached generic plan: a generic plan made while the tables are empty
/// or never analysed can read them whole, and a pooled connection keeps it while they grow.
/// </summary>
public class ReportPlanCacheTests(GenericPlanSessionApp app) : IClassFixture<GenericPlanSessionApp>, IAsyncLifetime
{
    public Task InitializeAsync() => app.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    [Fact]
    public async Task OnAFreshDatabaseThePostingsReadsArePlannedForTheirKeysEvenWhereTheSessionWouldReuseACachedPlan()
    {
        var reads = PlanSessionApp.Reads(await app.PlansAfterReportsAsync());
        Assert.Equal(LockedReads.All.Count, reads.Count);
        Assert.All(reads, p =>
        {
            Assert.True(p.GenericPlans == 0, $"{p.GenericPlans} generic plan(s) for: {p.Read.Name}");
            Assert.True(p.CustomPlans > 0, $"never executed prepared: {p.Read.Name}");
        });
    }

    // The write too: a batch's arrays, one statement per transaction.
    [Fact]
    public async Task ThePostingsWriteIsPlannedForItsValuesEvenWhereTheSessionWouldReuseACachedPlan()
    {
        var prepared = await app.PlansAfterReportsAsync();
        var write = ReportWriter.Command(new ReportWriter.Writes([], [], [], [])).CommandText.Trim();
        var (_, _, generic, custom) = Assert.Single(prepared, p => p.Statement.Trim() == write);
        Assert.Equal(0, generic);
        Assert.True(custom > 0, "the write never executed prepared");
    }
}

/// <summary>
/// Once every table the posting reads holds rows and has been analysed, each locked read and the write run the plan
/// cached on their connection (planned once, not at every execution), and that plan looks their rows up by their keys.
/// </summary>
public class ReportPlanCacheAnalysedTests(DefaultPlanSessionApp app) : IClassFixture<DefaultPlanSessionApp>, IAsyncLifetime
{
    public Task InitializeAsync() => app.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    private async Task<List<(string Name, string Statement, long GenericPlans, long CustomPlans)>> PlansOnAnalysedTablesAsync() =>
        await app.PlansAfterReportsAsync(async merchantId =>
        {
            // The merchant's history, written past the checks (its references are made up), then analysed.
            await using var admin = new NpgsqlConnection(app.AdminConnectionString);
            await admin.ExecuteAsync("SET session_replication_role = replica;\n" + ReportPlanTests.HistorySql + "\n" + WriteLookupsHistorySql +
                "\nSET session_replication_role = origin;\nSELECT pg_stat_force_next_flush();", new { m = merchantId });
            await AnalysedWithEveryRowCountedAsync(admin);
        });

    /// <summary>
    /// The two tables the write looks rows up in, at the size the history's 1,200 customers give them: three accounts and
    /// a few months of usage totals each. Left at the test's few accounts and one month of totals, both fit in a page or
    /// two, where reading them whole can cost less than ten key lookups: one run of the whole suite found the write's
    /// cached plan hashing both read whole (costed 1.10 and 34.00), which is right for tables that small. At these sizes
    /// the lookups are cheaper by far, as on any ledger in use.
    /// </summary>
    private const string WriteLookupsHistorySql = """
        INSERT INTO accounts (merchant_id, account_id, kind, type, customer_id, currency, cached)
        SELECT @m, 'acc_seed_' || i, 'credits_cycle', 'liability', 'cus_plan_' || (i % 1200 + 1), 'USD', true
          FROM generate_series(1, 3600) AS i;
        INSERT INTO usage_totals (merchant_id, meter_id, customer_id, period_start, quantity)
        SELECT @m, 'mtr_seed_' || (i % 5), 'cus_plan_' || (i % 1200 + 1), date_trunc('month', now()) - (1 + i / 1200) * interval '1 month', 1
          FROM generate_series(1, 6000) AS i ON CONFLICT DO NOTHING;
        """;

    /// <summary>
    /// Analyses every table once the statistics have counted every row of the posting's tables. A backend reports what it
    /// wrote up to a second after it goes idle (ten under contention); a count reported after an ANALYZE is added to what
    /// the ANALYZE counted, so the history's rows reported late would double their tables: at the edge of "not outgrown",
    /// where any later row tips a table over and its reads back to custom plans (on a slow machine, not on a fast one).
    /// And an ANALYZE, autovacuum's included, that ran while counts were still on their way leaves the live count off
    /// until the next one: so each try analyses, waits past the reporting interval, and checks the counts again.
    /// </summary>
    private static async Task AnalysedWithEveryRowCountedAsync(NpgsqlConnection admin)
    {
        var tables = PostingPlans.Tables;
        var deadline = DateTime.UtcNow.AddSeconds(60);
        while (true)
        {
            await admin.ExecuteAsync("ANALYZE", commandType: System.Data.CommandType.Text);
            await Task.Delay(1_500);
            var behind = new List<string>();
            foreach (var table in tables)
            {
                var (rows, live) = await admin.QuerySingleAsync<(long, long)>($"""
                    SELECT (SELECT count(*) FROM {table}),
                           coalesce((SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = '{table}'::regclass), 0)
                    """);
                if (rows != live) behind.Add($"{table}: {live} live of {rows} rows");
            }
            if (behind.Count == 0) return;
            Assert.True(DateTime.UtcNow < deadline, "the statistics never caught up: " + string.Join("; ", behind));
        }
    }

    [Fact]
    public async Task OnceItsTablesAreAnalysedEachReadRunsItsCachedPlanWhichLooksItsRowsUpByTheirKeys()
    {
        var prepared = await PlansOnAnalysedTablesAsync();
        var reads = PlanSessionApp.Reads(prepared);
        Assert.Equal(LockedReads.All.Count, reads.Count);
        Assert.All(reads, p => Assert.True(p.GenericPlans > 0 && p.CustomPlans == 0,
            $"{p.Read.Name}: {p.GenericPlans} generic, {p.CustomPlans} custom plan(s)"));

        // The plans the session cached, explained on that very session (the pool's one connection).
        await using var connection = await app.PostingSession.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync("SET LOCAL plan_cache_mode = force_generic_plan", transaction: tx);
        var wholeReads = new List<string>();
        foreach (var (read, name, _, _) in reads)
        {
            var values = string.Join(", ", Enumerable.Repeat("NULL", read.Parameters([]).Length));
            var json = await connection.QuerySingleAsync<string>($"EXPLAIN (FORMAT JSON) EXECUTE {name}({values})", transaction: tx);
            var found = ReportPlanTests.GenericPlanWholeReads(System.Text.Json.JsonDocument.Parse(json).RootElement[0].GetProperty("Plan")).ToList();
            if (found.Count > 0) wholeReads.Add($"{read.Name}: {string.Join("; ", found)}\n{json}");
        }
        Assert.True(wholeReads.Count == 0, string.Join("\n\n", wholeReads));
    }

    [Fact]
    public async Task OnceItsTablesAreAnalysedThePostingsWriteRunsItsCachedPlanWhichLooksItsRowsUpByTheirKeys()
    {
        var prepared = await PlansOnAnalysedTablesAsync();
        var write = ReportWriter.Command(new ReportWriter.Writes([], [], [], [])).CommandText.Trim();
        var (name, _, generic, custom) = Assert.Single(prepared, p => p.Statement.Trim() == write);
        Assert.True(generic > 0 && custom == 0, $"the write: {generic} generic, {custom} custom plan(s)");

        await using var connection = await app.PostingSession.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync("SET LOCAL plan_cache_mode = force_generic_plan", transaction: tx);
        var parameters = ReportWriter.Command(new ReportWriter.Writes([], [], [], [])).Parameters.Count;
        var json = await connection.QuerySingleAsync<string>(
            $"EXPLAIN (FORMAT JSON) EXECUTE {name}({string.Join(", ", Enumerable.Repeat("NULL", parameters))})", transaction: tx);
        var found = ReportPlanTests.GenericPlanWholeReads(System.Text.Json.JsonDocument.Parse(json).RootElement[0].GetProperty("Plan")).ToList();
        Assert.True(found.Count == 0, $"{string.Join("; ", found)}\n{json}");
    }

    // Holds are the gateway's: a batch that captures none has a write that does not name the table.
    [Fact]
    public void AWriteThatCapturesNoHoldsDoesNotTouchTheHoldsTable()
    {
        var capturing = new ReportWriter.Writes([], [], [], [new("m", "h", 1m, "r", DateTimeOffset.UtcNow)]);
        var plain = new ReportWriter.Writes([], [], [], []);
        Assert.Contains("UPDATE holds", ReportWriter.Command(capturing).CommandText);
        Assert.DoesNotContain("holds", ReportWriter.Command(plain).CommandText);
    }

    [Theory]
    [InlineData(false, -1, 0, PostingPlans.TableStatistics.Unsettled)]       // never analysed nor vacuumed
    [InlineData(true, 0, 0, PostingPlans.TableStatistics.Empty)]             // analysed empty and still empty
    [InlineData(true, 0, 1, PostingPlans.TableStatistics.Unsettled)]         // analysed empty, rows written since: estimated from its size alone
    [InlineData(true, -1, 0, PostingPlans.TableStatistics.Unsettled)]        // truncated: the last analyse kept, the count reset
    [InlineData(false, 1_000, 1_000, PostingPlans.TableStatistics.Unsettled)] // counted by CREATE INDEX or kept by pg_upgrade, never analysed: no column statistics
    [InlineData(true, 1_000, 1_000, PostingPlans.TableStatistics.WithRows)]
    [InlineData(true, 1_000, 2_000, PostingPlans.TableStatistics.WithRows)]
    [InlineData(true, 1_000, 2_001, PostingPlans.TableStatistics.Unsettled)] // more than doubled since it was analysed
    public void ATablesStatisticsAreSettledOnceAnalysedAndNotOutgrownSince(bool analysed, double counted, long live, PostingPlans.TableStatistics expected) =>
        Assert.Equal(expected, PostingPlans.Classify(analysed, counted, live));

    [Fact]
    public void EveryLockedReadNamesTheTablesItsPlanDependsOn() =>
        Assert.All(LockedReads.All, r => Assert.NotEmpty(r.Tables));
}
