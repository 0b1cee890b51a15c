using System.Net;
using Lava.Billing.Tests.Infrastructure;
using Lava.Billing.Tests.Webhooks;

namespace Lava.Billing.Tests.Credits;

/// <summary>An instance that delivers no webhooks, sweeping expired holds every tenth of a second.</summary>
public sealed class HoldSweepingApp : LavaApp
{
    protected override void ConfigureTestServices(Microsoft.AspNetCore.Hosting.IWebHostBuilder builder)
    {
        builder.UseSetting("Webhooks:AllowPrivateAddresses", "true");
        builder.UseSetting("Webhooks:Dispatch", "false");
        builder.UseSetting("Holds:ExpirySweepMs", "100");
    }
}

/// <summary>The hold-expiry sweep is the holds' own worker: it runs whether or not the instance delivers webhooks.</summary>
public class HoldExpirySweepTests(HoldSweepingApp app) : IClassFixture<HoldSweepingApp>, IAsyncLifetime
{
    public Task InitializeAsync() => app.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    private Task<long> NotedAsync(string holdId) =>
        app.QueryAsync<long>("SELECT count(*) FROM holds WHERE hold_id = @h AND expired_at IS NOT NULL", new { h = holdId });

    [Fact]
    public async Task AnInstanceThatDeliversNoWebhooksStillNotesAnExpiredHoldOnceAndRecordsItsEvent()
    {
        var m = await app.NewMerchantAsync();
        var customer = await app.CustomerAsync(m.MerchantId);
        await app.GrantAsync(m.MerchantId, customer, 10m);
        await WebhookDeliveryTests.CreateWebhookAsync(m, "http://127.0.0.1:9/hooks", new[] { "hold.expired" });
        var expiring = await m.Client.PostJsonAsync("/v1/holds", new { customer_id = customer, amount = "2", expires_in = 1 });
        var lasting = await m.Client.PostJsonAsync("/v1/holds", new { customer_id = customer, amount = "1", expires_in = 3600 });
        Assert.Equal(HttpStatusCode.Created, expiring.Status);
        var holdId = (string)expiring.Body!["hold_id"]!;

        var until = DateTime.UtcNow.AddSeconds(15);
        while (await NotedAsync(holdId) == 0 && DateTime.UtcNow < until) await Task.Delay(50);
        Assert.Equal(1L, await NotedAsync(holdId));
        await Task.Delay(300);
        Assert.Equal(1L, await app.QueryAsync<long>(
            "SELECT count(*) FROM webhook_events WHERE merchant_id = @m AND type = 'hold.expired'", new { m = m.MerchantId }));
        Assert.Equal(0L, await NotedAsync((string)lasting.Body!["hold_id"]!));
    }
}
