using Lava.Billing.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;

namespace Lava.Billing.Tests.Webhooks;

/// <summary>The service allowed to call loopback, polling often, retrying after a fifth of a second.</summary>
public class WebhookApp : LavaApp
{
    protected virtual IEnumerable<(string Key, string Value)> Settings() =>
    [
        ("Webhooks:AllowPrivateAddresses", "true"),
        ("Webhooks:PollIntervalMs", "50"),
        ("Webhooks:JitterFraction", "0"),
        ("Webhooks:AttemptTimeoutMs", "5000"),
        ("Webhooks:RetryScheduleSeconds:0", "0.2"),
        ("Webhooks:RetryScheduleSeconds:1", "0.2"),
        ("Webhooks:RetryScheduleSeconds:2", "0.2"),
        ("Webhooks:RetryScheduleSeconds:3", "0.2"),
        ("Webhooks:RetryScheduleSeconds:4", "0.2"),
        ("Holds:ExpirySweepMs", "100"),
    ];

    protected override void ConfigureTestServices(IWebHostBuilder builder)
    {
        foreach (var (key, value) in Settings()) builder.UseSetting(key, value);
    }
}

/// <summary>The same, with its dispatcher off: events are recorded and wait.</summary>
public sealed class UndispatchedWebhookApp : WebhookApp
{
    protected override IEnumerable<(string Key, string Value)> Settings() => [.. base.Settings(), ("Webhooks:Dispatch", "false")];
}
