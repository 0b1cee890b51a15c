using System.Net;
using Dapper;
using Lava.Billing.Infrastructure.Resilience;
using Npgsql;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>
/// What a failover does to the service's connections — every pooled connection to the old primary is dead — without
/// the rest of a failover: the server ends each of the service's sessions, as it does when it goes down.
/// </summary>
public class DatabaseRetryTests(LavaApp app) : ApiTest(app)
{
    private async Task<int> TerminateServiceConnectionsAsync()
    {
        await using var admin = new NpgsqlConnection(App.AdminConnectionString);
        return (await admin.QueryAsync<bool>("""
            SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND application_name = 'lava-billing' AND pid <> pg_backend_pid()
            """)).Count();
    }

    [Fact]
    public async Task AReportSentAfterTheDatabaseDroppedEveryConnectionIsPostedOnce()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "tok", "fixed", "tokens_1m", (0, 5));
        // Several reports at once, so the pool holds several connections that all die.
        var warm = await Task.WhenAll(Enumerable.Range(0, 8).Select(i =>
            m.Client.PostJsonAsync("/v1/requests", new { request_id = $"w{i}", customer_id = customer, meter_slug = "tok", input_tokens = 1000 })));
        Assert.All(warm, r => Assert.Equal(HttpStatusCode.Created, r.Status));
        Assert.True(await TerminateServiceConnectionsAsync() > 0);

        var after = await Task.WhenAll(Enumerable.Range(0, 4).Select(i =>
            m.Client.PostJsonAsync("/v1/requests", new { request_id = $"a{i}", customer_id = customer, meter_slug = "tok", input_tokens = 1000 })));

        Assert.All(after, r => Assert.True(r.Status == HttpStatusCode.Created, r.Body?.ToJsonString()));
        Assert.All(after, r => Assert.False(r.Response.Headers.Contains("Idempotent-Replayed")));
        Assert.Equal(12, await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", new { m = m.MerchantId }));
        Assert.Equal(12, await App.QueryAsync<long>(
            "SELECT count(*) FROM ledger_transactions WHERE merchant_id = @m AND reference ~ '^[wa][0-9]$'", new { m = m.MerchantId }));
    }

    [Fact]
    public void OnlyFailuresThatLeaveNothingHalfDoneAreRetried()
    {
        Assert.True(DatabaseRetry.IsConnectionFailure(new NpgsqlException("Exception while reading from stream", new EndOfStreamException())));
        Assert.True(DatabaseRetry.IsConnectionFailure(new NpgsqlException("Failed to connect", new System.Net.Sockets.SocketException(111))));
        Assert.False(DatabaseRetry.IsConnectionFailure(new InvalidOperationException("a bug")));
        Assert.False(DatabaseRetry.IsConnectionFailure(new HttpRequestException("the provider is down")));
    }
}
