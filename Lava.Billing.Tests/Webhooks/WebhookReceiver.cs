using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lava.Billing.Tests.Webhooks;

/// <summary>A merchant's webhook endpoint on a loopback port: records every delivery and answers as the test says.</summary>
public sealed class WebhookReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;

    public sealed record Received(Dictionary<string, string> Headers, string Body, DateTimeOffset At)
    {
        public JsonNode Json => JsonNode.Parse(Body)!;
        public string Event => Json["event"]!.GetValue<string>();
        public string Id => Headers["webhook-id"];
    }

    public ConcurrentQueue<Received> Requests { get; } = new();

    /// <summary>Answers a delivery (the default: 200); given the delivery and how many came before it.</summary>
    public Func<HttpContext, Received, int, Task> Answer { get; set; } = (context, _, _) =>
    {
        context.Response.StatusCode = 200;
        return Task.CompletedTask;
    };

    public string Url { get; }

    public WebhookReceiver()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
        _app = builder.Build();
        var count = 0;
        _app.Run(async context =>
        {
            var body = await new StreamReader(context.Request.Body, Encoding.UTF8).ReadToEndAsync();
            var received = new Received(context.Request.Headers.ToDictionary(h => h.Key.ToLowerInvariant(), h => h.Value.ToString()), body,
                DateTimeOffset.UtcNow);
            Requests.Enqueue(received);
            await Answer(context, received, Interlocked.Increment(ref count) - 1);
        });
        _app.StartAsync().GetAwaiter().GetResult();
        Url = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single() + "/hooks";
    }

    /// <summary>Waits until the deliveries received satisfy <paramref name="done"/>.</summary>
    public async Task<List<Received>> WaitForAsync(Func<List<Received>, bool> done, int timeoutMs = 15_000)
    {
        var until = DateTime.UtcNow.AddMilliseconds(timeoutMs);
        while (true)
        {
            var now = Requests.ToList();
            if (done(now)) return now;
            if (DateTime.UtcNow > until) throw new TimeoutException($"The receiver got {now.Count} deliveries: {string.Join(" | ", now.Select(r => r.Body))}");
            await Task.Delay(20);
        }
    }

    public ValueTask DisposeAsync() => _app.DisposeAsync();

    /// <summary>
    /// Standard Webhooks verification written from the specification: the secret is base64 after <c>whsec_</c>; the
    /// signed content is <c>id.timestamp.body</c>; the header lists space-separated <c>v1,&lt;base64 HMAC-SHA256&gt;</c>;
    /// the timestamp must be within five minutes.
    /// </summary>
    public static bool VerifiesStandardWebhooks(Received r, string secret)
    {
        var key = Convert.FromBase64String(secret["whsec_".Length..]);
        var timestamp = long.Parse(r.Headers["webhook-timestamp"]);
        if (Math.Abs(DateTimeOffset.UtcNow.ToUnixTimeSeconds() - timestamp) > 300) return false;
        var expected = Encoding.ASCII.GetBytes("v1," + Convert.ToBase64String(
            HMACSHA256.HashData(key, Encoding.UTF8.GetBytes($"{r.Headers["webhook-id"]}.{timestamp}.{r.Body}"))));
        return r.Headers["webhook-signature"].Split(' ')
            .Any(s => CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(s), expected));
    }

    /// <summary>Lava's check: hex HMAC-SHA256 of the raw body, keyed by the secret.</summary>
    public static bool VerifiesLava(Received r, string secret, string header = "x-webhook-signature") =>
        r.Headers.TryGetValue(header, out var signature) &&
        signature == Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), Encoding.UTF8.GetBytes(r.Body)));
}
