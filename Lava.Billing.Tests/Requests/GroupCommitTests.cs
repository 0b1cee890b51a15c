using Dapper;
using Lava.Billing.Ledger;
using Lava.Billing.Requests.Posting;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Requests;

/// <summary>
/// Group commit that never takes a turn over (a minute, against 50 ms by default): whatever a report waits for here, it
/// waits for long enough to show.
/// </summary>
public sealed class PatientGroupCommitApp : LavaApp
{
    protected override void ConfigureTestServices(IWebHostBuilder builder) =>
        builder.UseSetting("Requests:GroupCommit:HandOverAfterMs", "60000");
}

/// <summary>How many reports share a group-commit transaction, and what a report waits for.</summary>
public class GroupCommitTests(PatientGroupCommitApp app) : IClassFixture<PatientGroupCommitApp>, IAsyncLifetime
{
    private static readonly TimeSpan AtMost = TimeSpan.FromSeconds(30);

    public Task InitializeAsync() => app.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    private async Task<(string MerchantId, string Customer)> MerchantWithMeterAsync()
    {
        var (m, customer) = await app.ReportingMerchantAsync();
        return (m.MerchantId, customer);
    }

    private Task<ReportOutcome> Report(string merchantId, string customer, string id) =>
        app.Services.GetRequiredService<GroupCommit>().ReportAsync(new ReportItem(merchantId, ReportBodies.Of(id, customer, "gpt")), CancellationToken.None);

    /// <summary>The transaction that inserted each request row (its xmin), by request id.</summary>
    private async Task<Dictionary<string, string>> TransactionsAsync(string merchantId)
    {
        await using var connection = new NpgsqlConnection(app.ConnectionString);
        var rows = await connection.QueryAsync<(string RequestId, string Xmin)>(
            "SELECT request_id, xmin::text FROM requests WHERE merchant_id = @merchantId", new { merchantId });
        return rows.ToDictionary(r => r.RequestId, r => r.Xmin);
    }

    [Fact]
    public async Task ReportsArrivingWhileABatchRunsItsStatementsArePostedTogetherInTheNextTransaction()
    {
        var (held, heldCustomer) = await MerchantWithMeterAsync();
        var (other, otherCustomer) = await MerchantWithMeterAsync();
        var tx = await app.LockBalancesAsync(held, heldCustomer);
        Task<ReportOutcome> inFlight;
        List<Task<ReportOutcome>> arrivals;
        try
        {
            inFlight = Report(held, heldCustomer, "in-flight");
            await app.UntilASessionWaitsForALockAsync();
            // The first arrival is given time to be posted on its own, as a writer starting a batch beside the one in
            // flight would; then four more.
            var first = Report(other, otherCustomer, "arrival-0");
            await Task.WhenAny(first, Task.Delay(TimeSpan.FromSeconds(2)));
            arrivals = [first, .. Enumerable.Range(1, 4).Select(i => Report(other, otherCustomer, $"arrival-{i}"))];
            Assert.False(inFlight.IsCompleted);
        }
        finally
        {
            await tx.RollbackAsync();
            await tx.Connection!.DisposeAsync();
        }

        Assert.IsType<ReportOutcome.Created>(await inFlight.WaitAsync(AtMost));
        foreach (var outcome in await Task.WhenAll(arrivals).WaitAsync(AtMost)) Assert.IsType<ReportOutcome.Created>(outcome);
        var transactions = await TransactionsAsync(other);
        Assert.Equal(5, transactions.Count);
        Assert.Single(transactions.Values.Distinct());
        Assert.NotEqual((await TransactionsAsync(held))["in-flight"], transactions["arrival-0"]);
        Assert.Equal(5m, await app.BalanceAsync(other, LedgerAccounts.Receivable(otherCustomer)));
    }

    [Fact]
    public async Task AReportArrivingWhileAnotherBatchCommitsIsPostedAtOnceInATransactionOfItsOwn()
    {
        var (committing, committingCustomer) = await MerchantWithMeterAsync();
        var (other, otherCustomer) = await MerchantWithMeterAsync();
        // The batch in flight gets through its reads, then waits in its write for this request id's row to be decided.
        var tx = await app.HoldRequestIdAsync(committing, "committing");
        Task<ReportOutcome> inFlight;
        try
        {
            inFlight = Report(committing, committingCustomer, "committing");
            await app.UntilASessionWaitsForALockAsync();

            // Waiting for the batch in flight would mean waiting for the transaction above: a minute for the turn.
            Assert.IsType<ReportOutcome.Created>(await Report(other, otherCustomer, "alone").WaitAsync(AtMost));
            Assert.False(inFlight.IsCompleted);
        }
        finally
        {
            await tx.RollbackAsync();
            await tx.Connection!.DisposeAsync();
        }

        Assert.IsType<ReportOutcome.Created>(await inFlight.WaitAsync(AtMost));
        Assert.NotEqual((await TransactionsAsync(committing))["committing"], (await TransactionsAsync(other))["alone"]);
    }

    [Fact]
    public async Task ReportsMadeOneAfterAnotherAreEachPostedAtOnceInATransactionOfTheirOwn()
    {
        var (m, customer) = await MerchantWithMeterAsync();

        // Nothing else in flight: a report that waited for company (or for a turn) would wait the minute this app allows.
        for (var i = 0; i < 3; i++) Assert.IsType<ReportOutcome.Created>(await Report(m, customer, $"alone-{i}").WaitAsync(AtMost));

        Assert.Equal(3, (await TransactionsAsync(m)).Values.Distinct().Count());
    }
}
