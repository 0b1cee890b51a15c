using System.Net;
using Dapper;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Ledger;
using Lava.Billing.Requests.Posting;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Requests;

/// <summary>
/// A pool of six connections: a few calls of one merchant held in the database could take every one of them. The
/// posting pool (group-commit writers + 2, by default 5) is no larger than the string allows, so it keeps its size here.
/// </summary>
public sealed class SixConnectionsApp : LavaApp
{
    protected override void ConfigureTestServices(IWebHostBuilder builder) =>
        builder.UseSetting("ConnectionStrings:Billing", new NpgsqlConnectionStringBuilder(ConnectionString) { MaxPoolSize = 6 }.ConnectionString);
}

/// <summary>
/// One merchant's calls that hold database connections (batches waiting for rows another transaction holds, here) take
/// at most their merchant's share of the pool, and never the connections single reports are posted with.
/// </summary>
public class ConnectionShareTests(SixConnectionsApp app) : IClassFixture<SixConnectionsApp>, IAsyncLifetime
{
    public Task InitializeAsync() => app.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    private static object Report(string id, string customer, string meter = "gpt") =>
        new { request_id = id, customer_id = customer, meter_slug = meter, input_tokens = 0, output_tokens = 0 };

    [Fact]
    public void ReportsArePostedOnAPoolOfTheirOwnSizedForTheWriters()
    {
        var connections = app.Services.GetRequiredService<PostingConnections>();
        Assert.Same(app.Services.GetRequiredService<NpgsqlDataSource>(), connections[PostingPool.Shared]);
        var reserved = new NpgsqlConnectionStringBuilder(connections[PostingPool.Reserved].ConnectionString);
        Assert.Equal(new GroupCommitOptions().Writers + 2, reserved.MaxPoolSize);
        Assert.Equal("lava-billing-posting", reserved.ApplicationName);
    }

    [Fact]
    public async Task ASingleReportIsPostedWhileEveryConnectionOfTheSharedPoolIsTaken()
    {
        var (m, customer) = await app.ReportingMerchantAsync();
        await app.MeterAsync(m.MerchantId, "new", "fixed", "requests", (0, 1));
        // Its key cached by a first report (for 5 s), as for a merchant reporting steadily.
        Assert.Equal(HttpStatusCode.Created, (await m.Client.PostJsonAsync("/v1/requests", Report("r1", customer))).Status);
        var shared = app.Services.GetRequiredService<NpgsqlDataSource>();
        var taken = new List<NpgsqlConnection>();
        try
        {
            // Six calls in the database at once, of as many merchants as it takes: the whole shared pool.
            for (var i = 0; i < 6; i++) taken.Add(await shared.OpenConnectionAsync());

            // On a meter not reported before: its price is read on the posting's own pool too.
            var second = await Waits.WithinAsync(m.Client.PostJsonAsync("/v1/requests", Report("r2", customer, "new")), "a single report");
            Assert.Equal(HttpStatusCode.Created, second.Status);
        }
        finally
        {
            foreach (var connection in taken) await connection.DisposeAsync();
        }
        Assert.Equal(2m, await app.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(customer)));
    }

    [Fact]
    public async Task AMerchantsBatchesStuckOnLockedRowsLeaveConnectionsForAnotherMerchantsReportsBatchesAndReads()
    {
        var (stuck, held) = await app.ReportingMerchantAsync();
        var (other, otherCustomer) = await app.ReportingMerchantAsync();
        const int calls = 12;
        var tx = await app.LockBalancesAsync(stuck.MerchantId, held);
        List<Task<(HttpStatusCode Status, System.Text.Json.Nodes.JsonNode? Body, HttpResponseMessage Response)>> batches;
        try
        {
            // Each batch of one report waits for the held rows up to 5 s, three times, holding a connection meanwhile.
            batches = Enumerable.Range(0, calls)
                .Select(i => stuck.Client.PostJsonAsync("/v1/requests/batch", new { requests = new[] { Report($"s{i}", held) } }))
                .ToList();
            // Two of the merchant's batches run at once (Limits:PerMerchant:Batches), eight wait their turn, the rest are
            // refused at once with 429: nothing of theirs is posted, and the same request ids are safe to send again.
            var limits = app.Services.GetRequiredService<MerchantLimits>();
            await Waits.UntilAsync(() => limits.Waiting(stuck.MerchantId, MerchantLimits.Kind.Batches) == 8 &&
                                                      batches.Count(b => b.IsCompleted) == 2, "eight batches in line and two refused");
            // Both running batches reach the held rows (the second may take a moment longer than the first on a busy machine).
            await Waits.UntilAsync(async () => await app.SessionsWaitingForALockAsync() >= 2, "the two running batches wait for the held rows");
            Assert.Equal(2, await app.SessionsWaitingForALockAsync());
            var refused = batches.Where(b => b.IsCompleted).ToList();
            foreach (var r in refused)
            {
                var response = await r;
                response.AssertProblem(HttpStatusCode.TooManyRequests, "too_many_batches");
                Assert.NotNull(response.Response.Headers.RetryAfter);
            }

            var single = await Waits.WithinAsync(other.Client.PostJsonAsync("/v1/requests", Report("o1", otherCustomer)), "a single report");
            Assert.Equal(HttpStatusCode.Created, single.Status);
            var batch = await Waits.WithinAsync(other.Client.PostJsonAsync("/v1/requests/batch",
                new { requests = new[] { Report("o2", otherCustomer), Report("o3", otherCustomer) } }), "a batch");
            Assert.Equal(HttpStatusCode.OK, batch.Status);
            Assert.All(batch.Body!["data"]!.AsArray(), item => Assert.Equal("created", (string?)item!["status"]));
            var read = await Waits.WithinAsync(other.Client.GetJsonAsync("/v1/customers"), "a read");
            Assert.Equal(HttpStatusCode.OK, read.Status);
        }
        finally
        {
            await tx.RollbackAsync();
            await tx.Connection!.DisposeAsync();
        }

        var answers = await Task.WhenAll(batches);
        Assert.Equal(calls - 2, answers.Count(a => a.Status == HttpStatusCode.OK && (string?)a.Body!["data"]![0]!["status"] == "created"));
        Assert.Equal(calls - 2, await app.BalanceAsync(stuck.MerchantId, LedgerAccounts.Receivable(held)));
        Assert.Equal(3m, await app.BalanceAsync(other.MerchantId, LedgerAccounts.Receivable(otherCustomer)));
    }
}
