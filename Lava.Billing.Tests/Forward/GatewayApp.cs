using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Lava.Billing.Forward;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Console;

namespace Lava.Billing.Tests.Forward;

/// <summary>The service with a fake provider on loopback as its only allowed upstream, and every log line captured.</summary>
public class GatewayApp : LavaApp
{
    public const string ManagedKey = "sk-managed-key-of-the-merchant";

    public FakeProvider Fake { get; } = new();
    public CapturedLogs Logs { get; } = new();

    /// <summary>A loopback port with nothing listening: connections to it are refused.</summary>
    public string ClosedUpstream { get; } = "http://127.0.0.1:" + ClosedPort();

    protected virtual IEnumerable<(string Key, string Value)> Settings() =>
    [
        ("Forward:AllowedUpstreams:0", Fake.BaseUrl + "/v1"),
        ("Forward:AllowedUpstreams:1", Fake.BaseUrl + "/v1beta"),
        ("Forward:AllowedUpstreams:2", ClosedUpstream + "/v1"),
        ("Forward:ManagedKeys:127.0.0.1", ManagedKey),
        ("Forward:TimeoutsMs:127.0.0.1", "1000"),
        // Failures in one test must not open the breaker for the next; BreakerGatewayApp tests the breaker.
        ("Forward:CircuitBreaker:MinimumThroughput", "100000"),
        // The settle worker and a stream's progress notes at test speed.
        ("Forward:SettleIntervalMs", "100"),
        ("Forward:SettleRetryBaseMs", "100"),
        ("Forward:ProgressMs", "100"),
    ];

    /// <summary>
    /// Whether a gateway call's response ends only once its posting did. The service posts after the response (off the
    /// client's path); tests that look at the ledger right after reading a response need the posting done by then.
    /// </summary>
    protected virtual bool ResponseWaitsForPosting => true;

    protected override void ConfigureTestServices(IWebHostBuilder builder)
    {
        foreach (var (key, value) in Settings()) builder.UseSetting(key, value);
        builder.ConfigureLogging(l => l.SetMinimumLevel(LogLevel.Trace)
            .AddFilter<ConsoleLoggerProvider>(level => level >= LogLevel.Warning)
            .AddProvider(Logs));
        if (ResponseWaitsForPosting) builder.ConfigureServices(services => services.AddTransient<IStartupFilter, WaitForPosting>());
    }

    /// <summary>Outermost: the test server ends a response when the pipeline returns, so this holds its end until the posting queue is idle.</summary>
    private sealed class WaitForPosting : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            var posting = app.ApplicationServices.GetRequiredService<ForwardPostingQueue>();
            app.Use(async (context, inner) =>
            {
                await inner(context);
                var deadline = DateTime.UtcNow.AddSeconds(10);
                while (!posting.Idle && DateTime.UtcNow < deadline) await Task.Delay(5);
            });
            next(app);
        };
    }

    /// <summary>A merchant with a "chat" meter (5 per 1M tokens) and a customer granted 1 credit: what a billed call needs.</summary>
    public async Task<(Merchant M, string Customer)> ChatCustomerAsync()
    {
        var m = await NewMerchantAsync();
        var customer = await this.CustomerAsync(m.MerchantId);
        await this.MeterAsync(m.MerchantId, "chat", "fixed", "tokens_1m", (0, 5m));
        await this.GrantAsync(m.MerchantId, customer, 1m);
        return (m, customer);
    }

    public async Task PostedAsync()
    {
        var posting = Services.GetRequiredService<ForwardPostingQueue>();
        await Waits.UntilAsync(() => posting.Idle, "the posting queue emptied");
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        await Fake.DisposeAsync();
    }

    /// <summary>A client authorised the way the SDK's gateway() does it: Bearer base64(JSON) with undefined members left out.</summary>
    public HttpClient ClientWithToken(string secretKey, string? customerId = null, string? meterSlug = null, string? providerKey = null,
        bool? disableBilling = null, bool customerNull = false)
    {
        var client = CreateClient();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer",
            Token(secretKey, customerId, meterSlug, providerKey, disableBilling, customerNull));
        return client;
    }

    public static string Token(string secretKey, string? customerId = null, string? meterSlug = null, string? providerKey = null,
        bool? disableBilling = null, bool customerNull = false)
    {
        var data = new Dictionary<string, object?> { ["secret_key"] = secretKey };
        if (customerId is not null || customerNull) data["customer_id"] = customerId;
        if (meterSlug is not null) data["meter_slug"] = meterSlug;
        if (providerKey is not null) data["provider_key"] = providerKey;
        if (disableBilling is not null) data["disable_billing"] = disableBilling;
        return Convert.ToBase64String(Encoding.UTF8.GetBytes(JsonSerializer.Serialize(data)));
    }

    public string Forward(string pathAndQuery) => "/v1/forward?u=" + Uri.EscapeDataString(Fake.BaseUrl + pathAndQuery);

    private static int ClosedPort()
    {
        var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}

/// <summary>Base for gateway tests: a clean database and a fresh fake provider before each test.</summary>
public abstract class GatewayTest<TApp>(TApp app) : IClassFixture<TApp>, IAsyncLifetime where TApp : GatewayApp
{
    protected TApp App { get; } = app;
    protected FakeProvider Fake => App.Fake;

    public virtual async Task InitializeAsync()
    {
        await App.ResetAsync();
        Fake.Reset();
    }

    public virtual Task DisposeAsync() => Task.CompletedTask;

    /// <summary>Billing runs after the last byte went out; a test that ended its read early waits for the row.</summary>
    protected Task WaitForRowAsync(string countSql, object args) =>
        Waits.UntilAsync(async () => await App.QueryAsync<long>(countSql, args) > 0, "the gateway call was billed");
}
