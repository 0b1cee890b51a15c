using System.Net;
using Dapper;
using Lava.Billing.Tests.Infrastructure;
using Npgsql;

namespace Lava.Billing.Tests.Requests;

/// <summary>
/// Reports take their secret key and their meter's price from memory after the first report, and check both again in
/// the transaction that posts them. These tests change keys and prices behind the app's back, straight in the database,
/// as another instance of the service would: a cached copy must never bill.
/// </summary>
public class ReportCachedLookupTests(LavaApp app) : ApiTest(app)
{
    private async Task ExecuteAsync(string sql, object args)
    {
        await using var connection = new NpgsqlConnection(App.ConnectionString);
        await connection.ExecuteAsync(sql, args);
    }

    private async Task<bool> ABackendWaitsOnALockAsync()
    {
        await using var probe = new NpgsqlConnection(App.ConnectionString);
        for (var i = 0; i < 500; i++)
        {
            if (await probe.ExecuteScalarAsync<bool>(
                    "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock')"))
                return true;
            await Task.Delay(20);
        }
        return false;
    }

    private Task<long> RequestCountAsync(string merchant) =>
        App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", new { m = merchant });

    [Fact]
    public async Task AKeyRevokedElsewhereCannotReportNorSeeAReplay()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        Assert.Equal(HttpStatusCode.Created, (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r1", meter_slug = "gpt" })).Status);

        await ExecuteAsync("UPDATE secret_keys SET revoked_at = now() WHERE merchant_id = @m", new { m = m.MerchantId });

        (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r2", meter_slug = "gpt" })).AssertProblem(HttpStatusCode.Unauthorized, "unauthorized");
        (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r1", meter_slug = "gpt" })).AssertProblem(HttpStatusCode.Unauthorized, "unauthorized");
        var batch = await m.Client.PostJsonAsync("/v1/requests/batch", new { requests = new[] { new { request_id = "r3", meter_slug = "gpt" } } });
        if (batch.Status == HttpStatusCode.OK)
        {
            Assert.Equal("refused", (string)batch.Body!["data"]![0]!["status"]!);
            Assert.Equal(401, (int)batch.Body!["data"]![0]!["error"]!["status"]!);
        }
        else
        {
            batch.AssertProblem(HttpStatusCode.Unauthorized, "unauthorized");
        }
        Assert.Equal(1, await RequestCountAsync(m.MerchantId));
    }

    [Fact]
    public async Task AKeyRevokedThroughTheApiIsRefusedAtOnce()
    {
        var m = await App.NewMerchantAsync();
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        var second = await m.Client.PostJsonAsync("/v1/secret_keys", new { name = "reporter" });
        var reporter = App.ClientWithKey((string)second.Body!["secret_key"]!);
        Assert.Equal(HttpStatusCode.Created, (await reporter.PostJsonAsync("/v1/requests", new { request_id = "r1", meter_slug = "gpt" })).Status);

        Assert.Equal(HttpStatusCode.OK, (await m.Client.DeleteJsonAsync($"/v1/secret_keys/{second.Body["secret_key_id"]}")).Status);

        (await reporter.PostJsonAsync("/v1/requests", new { request_id = "r2", meter_slug = "gpt" })).AssertProblem(HttpStatusCode.Unauthorized, "unauthorized");
        (await reporter.PostJsonAsync("/v1/requests", new { request_id = "r2" })).AssertProblem(HttpStatusCode.Unauthorized, "unauthorized");
        Assert.Equal(1, await RequestCountAsync(m.MerchantId));
    }

    [Fact]
    public async Task APriceChangedElsewhereBillsTheNextReport()
    {
        var m = await App.NewMerchantAsync();
        var meterId = await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 2));
        var first = await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r1", meter_slug = "gpt" });
        Assert.Equal("2.0000000000", (string)first.Body!["charge"]!["amount"]!);

        await ExecuteAsync("""
            INSERT INTO meter_prices (merchant_id, meter_id, version, tier_starts, tier_rates) VALUES (@m, @meter, 2, '{0}', '{3}');
            UPDATE meters SET current_version = 2 WHERE merchant_id = @m AND meter_id = @meter;
            """, new { m = m.MerchantId, meter = meterId });

        var second = await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r2", meter_slug = "gpt" });
        Assert.Equal(HttpStatusCode.Created, second.Status);
        Assert.Equal("3.0000000000", (string)second.Body!["charge"]!["amount"]!);
        Assert.Equal(2, (int)second.Body!["price_version"]!);
        Assert.Equal(2, await App.QueryAsync<int>("SELECT price_version FROM requests WHERE merchant_id = @m AND request_id = 'r2'", new { m = m.MerchantId }));
    }

    [Fact]
    public async Task AMeterDeletedElsewhereIsNotFoundAndASlugReusedNamesTheNewMeter()
    {
        var m = await App.NewMerchantAsync();
        var oldMeter = await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 2));
        Assert.Equal(HttpStatusCode.Created, (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r1", meter_slug = "gpt" })).Status);

        await ExecuteAsync("UPDATE meters SET deleted_at = now() WHERE merchant_id = @m AND meter_id = @meter", new { m = m.MerchantId, meter = oldMeter });
        (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r2", meter_slug = "gpt" })).AssertProblem(HttpStatusCode.NotFound, "not_found");

        var newMeter = await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 5));
        var third = await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r3", meter_slug = "gpt" });
        Assert.Equal(HttpStatusCode.Created, third.Status);
        Assert.Equal(newMeter, (string)third.Body!["meter_id"]!);
        Assert.Equal("5.0000000000", (string)third.Body!["charge"]!["amount"]!);
    }

    [Fact]
    public async Task AReportRacingTheDeletionOfAnUnusedMeterIsNotFoundNotAServerError()
    {
        var m = await App.NewMerchantAsync();
        var meter = await App.MeterAsync(m.MerchantId, "fresh", "fixed", "requests", (0, 1));

        // The deletion holds its locks while the report is on its way; the report's insert waits on them, then finds the
        // meter's price gone.
        await using var deleting = new NpgsqlConnection(App.ConnectionString);
        await deleting.OpenAsync();
        await using var tx = await deleting.BeginTransactionAsync();
        await deleting.ExecuteAsync("DELETE FROM meters WHERE merchant_id = @m AND meter_id = @meter", new { m = m.MerchantId, meter }, tx);
        var report = m.Client.PostJsonAsync("/v1/requests", new { request_id = "r1", meter_slug = "fresh" });
        Assert.True(await ABackendWaitsOnALockAsync(), "the report never reached the deletion's locks");
        Assert.False(report.IsCompleted);
        await tx.CommitAsync();

        (await report).AssertProblem(HttpStatusCode.NotFound, "not_found");
        Assert.Equal(0, await RequestCountAsync(m.MerchantId));
    }
}
