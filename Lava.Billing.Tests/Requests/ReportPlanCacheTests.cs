using System.Net;
using Dapper;
using Lava.Billing.Requests.Posting;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Requests;

/// <summary>
/// One pooled connection whose session would run every prepared statement with its cached generic plan, unless a
/// transaction sets its own: what PostgreSQL chooses by itself after five executions when the generic plan looks no
/// dearer than the custom ones.
/// </summary>
public sealed class GenericPlanSessionApp : LavaApp
{
    protected override void ConfigureTestServices(IWebHostBuilder builder) =>
        builder.UseSetting("ConnectionStrings:Billing", new NpgsqlConnectionStringBuilder(ConnectionString)
        {
            MaxPoolSize = 1,
            Options = "-c plan_cache_mode=force_generic_plan",
        }.ConnectionString);

    /// <summary>Eight reports, one at a time, on a fresh session; then each prepared statement's plans so far.</summary>
    public async Task<List<(string Statement, long GenericPlans, long CustomPlans)>> PlansAfterReportsAsync()
    {
        var m = await NewMerchantAsync();
        await this.MeterAsync(m.MerchantId, "tokens", "fixed", "tokens_1m", (0, 1));
        var customerId = await this.CustomerAsync(m.MerchantId);
        var db = Services.GetRequiredService<NpgsqlDataSource>();
        // A fresh session, so the statements' uses are counted from zero and they are prepared on the fifth.
        db.Clear();
        for (var i = 0; i < 8; i++)
        {
            var r = await m.Client.PostJsonAsync("/v1/requests",
                new { request_id = $"req_plan_{i}", customer_id = customerId, meter_slug = "tokens", input_tokens = 100, output_tokens = 10 });
            Assert.True(r.Status == HttpStatusCode.Created, $"report {i}: {(int)r.Status} {r.Body?.ToJsonString()}");
        }
        await using var connection = await db.OpenConnectionAsync();
        return (await connection.QueryAsync<(string, long, long)>(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")).AsList();
    }
}

/// <summary>
/// The posting's locked reads and its write are planned for their values at every execution
/// (<see cref="LockedReads.PlanSettings"/>), even in a session that would reuse a cached generic plan: a generic plan
/// made while a fresh database's tables are empty can read them whole, and a pooled connection keeps it while they grow.
/// </summary>
public class ReportPlanCacheTests(GenericPlanSessionApp app) : IClassFixture<GenericPlanSessionApp>, IAsyncLifetime
{
    public Task InitializeAsync() => app.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    [Fact]
    public async Task ThePostingsReadsArePlannedForTheirKeysEvenWhereTheSessionWouldReuseACachedPlan()
    {
        var prepared = await app.PlansAfterReportsAsync();
        var reads = prepared.Where(p => LockedReads.All.Any(read => p.Statement.Trim() == read.Sql.Trim())).ToList();
        Assert.Equal(LockedReads.All.Count, reads.Count);
        Assert.All(reads, p =>
        {
            Assert.True(p.GenericPlans == 0, $"{p.GenericPlans} generic plan(s) for: {p.Statement}");
            Assert.True(p.CustomPlans > 0, $"never executed prepared: {p.Statement}");
        });
    }

    // The write too: a batch's arrays, one statement per transaction.
    [Fact]
    public async Task ThePostingsWriteIsPlannedForItsValuesEvenWhereTheSessionWouldReuseACachedPlan()
    {
        var prepared = await app.PlansAfterReportsAsync();
        var write = ReportWriter.Command(new ReportWriter.Writes([], [], [], [])).CommandText.Trim();
        var (_, generic, custom) = Assert.Single(prepared, p => p.Statement.Trim() == write);
        Assert.Equal(0, generic);
        Assert.True(custom > 0, "the write never executed prepared");
    }
}
