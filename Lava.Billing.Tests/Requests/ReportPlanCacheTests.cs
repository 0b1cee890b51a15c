using System.Net;
using Dapper;
using Lava.Billing.Requests.Posting;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Requests;

/// <summary>
/// One pooled connection whose session would run every prepared statement with its cached generic plan: what
/// PostgreSQL chooses by itself after five executions when the generic plan looks no dearer, as it does on a young
/// database whose tables were empty when the plan was made.
/// </summary>
public sealed class GenericPlanSessionApp : LavaApp
{
    protected override void ConfigureTestServices(IWebHostBuilder builder) =>
        builder.UseSetting("ConnectionStrings:Billing", new NpgsqlConnectionStringBuilder(ConnectionString)
        {
            MaxPoolSize = 1,
            Options = "-c plan_cache_mode=force_generic_plan",
        }.ConnectionString);
}

/// <summary>
/// The posting's locked reads are planned for the keys they are given at every execution, never from a plan cached
/// for the statement (<see cref="LockedReads.PlanSettings"/>): a generic plan for arrays of keys reads whole tables,
/// and one made on a young database is kept while its tables grow.
/// </summary>
public class ReportPlanCacheTests(GenericPlanSessionApp app) : IClassFixture<GenericPlanSessionApp>, IAsyncLifetime
{
    public Task InitializeAsync() => app.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    [Fact]
    public async Task ThePostingsReadsAreNeverRunWithACachedGenericPlanEvenWhereTheSessionWouldChooseOne()
    {
        var m = await app.NewMerchantAsync();
        await app.MeterAsync(m.MerchantId, "tokens", "fixed", "tokens_1m", (0, 1));
        var customerId = await app.CustomerAsync(m.MerchantId);
        var db = app.Services.GetRequiredService<NpgsqlDataSource>();
        // A fresh session, so the statements' uses are counted from zero and they are prepared on the fifth.
        db.Clear();
        for (var i = 0; i < 8; i++)
        {
            var r = await m.Client.PostJsonAsync("/v1/requests",
                new { request_id = $"req_plan_{i}", customer_id = customerId, meter_slug = "tokens", input_tokens = 100, output_tokens = 10 });
            Assert.True(r.Status == HttpStatusCode.Created, $"report {i}: {(int)r.Status} {r.Body?.ToJsonString()}");
        }

        await using var connection = await db.OpenConnectionAsync();
        var prepared = (await connection.QueryAsync<(string Statement, long GenericPlans, long CustomPlans)>(
            "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements")).AsList();
        var reads = prepared.Where(p => LockedReads.All.Any(read => p.Statement.Trim() == read.Sql.Trim())).ToList();
        Assert.NotEmpty(reads);
        Assert.All(reads, p =>
        {
            Assert.True(p.GenericPlans == 0, $"{p.GenericPlans} generic plan(s) for: {p.Statement}");
            Assert.True(p.CustomPlans > 0, $"never executed prepared: {p.Statement}");
        });
    }
}
