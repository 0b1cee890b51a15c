using System.Net;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Forward;

/// <summary>What /metrics says of gateway calls.</summary>
public class GatewayMetricsTests(GatewayApp app) : GatewayTest<GatewayApp>(app)
{
    private const string Added = "lava_gateway_added_duration_seconds_count";

    [Fact]
    public async Task ABilledCallIsTimedBeforeTheProviderAndAfterItWhileItsUsageIsWritten()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "chat", "fixed", "tokens_1m", (0, 5m));
        await App.GrantAsync(m.MerchantId, customer, 1m);
        var before = await MetricsTests.ScrapeAsync(App.CreateClient());

        var r = await App.ClientWithToken(m.SecretKey, customer, "chat").PostAsync(App.Forward("/v1/chat/completions"),
            Http.Json(new { model = "gpt-4o", messages = new[] { new { role = "user", content = "Say hello" } } }));

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var after = await MetricsTests.ScrapeAsync(App.CreateClient());
        double Moved(string phase) => (MetricsTests.Sample(after, Added, $"phase=\"{phase}\"") ?? 0) -
                                      (MetricsTests.Sample(before, Added, $"phase=\"{phase}\"") ?? 0);
        Assert.True(Moved("before") >= 1, after);
        Assert.True(Moved("after") >= 1, after);
    }
}
