using Lava.Billing.Tests.Infrastructure;
using Microsoft.AspNetCore.Mvc.Testing;

namespace Lava.Billing.Tests.Webhooks;

/// <summary>Two instances of the service, both dispatching, on one database.</summary>
public sealed class TwoDispatchersApp : WebhookApp
{
    private WebApplicationFactory<Program>? _second;

    /// <summary>Started on first use; same configuration and database, its own dispatcher.</summary>
    public WebApplicationFactory<Program> Second => _second ??= WithWebHostBuilder(_ => { });
}

/// <summary>The in-flight limit is the endpoint's, not each instance's.</summary>
public class WebhookInstancesTests(TwoDispatchersApp app) : IClassFixture<TwoDispatchersApp>, IAsyncLifetime
{
    private readonly WebhookReceiver _receiver = new();

    public Task InitializeAsync() => app.ResetAsync();

    public async Task DisposeAsync() => await _receiver.DisposeAsync();

    [Fact]
    public async Task TwoDispatchersNeverHaveMoreThanTheEndpointsLimitInFlightToIt()
    {
        _ = app.Second.Services; // the second dispatcher runs from here on
        var m = await app.NewMerchantAsync();
        var inFlight = 0;
        var most = 0;
        _receiver.Answer = async (context, _, _) =>
        {
            var now = Interlocked.Increment(ref inFlight);
            lock (_receiver) most = Math.Max(most, now);
            await Task.Delay(400);
            Interlocked.Decrement(ref inFlight);
            context.Response.StatusCode = 200;
        };
        await WebhookDeliveryTests.CreateWebhookAsync(m, _receiver.Url);
        // Each customer is a line of its own, so every delivery may go out in parallel, limited only by the endpoint's cap.
        for (var i = 0; i < 24; i++) await m.Client.PostJsonAsync("/v1/customers", new { name = $"Customer {i}" });

        await _receiver.WaitForAsync(r => r.Select(x => x.Id).Distinct().Count() >= 24, timeoutMs: 30_000);
        Assert.True(most <= 4, $"{most} deliveries were in flight to one endpoint at once");
        Assert.Equal(4, most);
    }
}
