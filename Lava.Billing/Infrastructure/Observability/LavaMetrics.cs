using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Lava.Billing.Infrastructure.Observability;

/// <summary>
/// Every instrument the service records, in one place (docs/metrics.md lists them with a sample scrape). Static, so an
/// instrumentation point is one line and needs no constructor parameter; the exporter (<see cref="Observability"/>)
/// listens to <see cref="MeterName"/>. Tags are bounded sets (outcomes, problem codes, allow-listed provider hosts,
/// formats), never ids, so the number of series stays small.
/// </summary>
public static class LavaMetrics
{
    public const string MeterName = "Lava.Billing";

    private static readonly Meter Meter = new(MeterName);

    // Seconds, from a millisecond up to the gateway's 120 s stall limit.
    private static readonly InstrumentAdvice<double> SecondsBuckets = new()
    {
        HistogramBucketBoundaries = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120],
    };

    private static readonly Counter<long> Reports = Meter.CreateCounter<long>("lava.reports", "{report}",
        "Usage reports answered, by outcome (posted, replayed, refused) and, when refused, the problem code.");

    private static readonly Histogram<double> PostDuration = Meter.CreateHistogram("lava.reports.post.duration", "s",
        "Time of one posting transaction (lock, plan, write, commit), whatever the number of reports in it.", advice: SecondsBuckets);

    private static readonly Histogram<int> BatchSize = Meter.CreateHistogram("lava.group_commit.batch.size", "{report}",
        "Reports that shared one group-commit transaction.",
        advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024] });

    private static readonly Histogram<double> QueueWait = Meter.CreateHistogram("lava.group_commit.wait.duration", "s",
        "Time a single report waited in the group-commit queue before a writer took it into a transaction.", advice: SecondsBuckets);

    private static readonly UpDownCounter<long> QueueDepth = Meter.CreateUpDownCounter<long>("lava.group_commit.queue.depth", "{report}",
        "Reports waiting for a group-commit writer.");

    private static readonly Counter<long> GatewayCalls = Meter.CreateCounter<long>("lava.gateway.calls", "{call}",
        "Provider calls made by the gateway, by provider host and status (the HTTP status, or timeout, circuit_open, unreachable).");

    private static readonly Histogram<double> GatewayAdded = Meter.CreateHistogram("lava.gateway.added.duration", "s",
        "Time the gateway adds to a provider call: before (checks, price, hold) and after (billing) the provider's answer.",
        advice: SecondsBuckets);

    private static readonly Counter<long> GatewayPostings = Meter.CreateCounter<long>("lava.gateway.postings", "{posting}",
        "Gathered postings of served gateway calls, by what ended the gathering: full (a batch's worth queued), delay (the posting delay ran out) or none (no delay set).");

    private static readonly ConcurrentDictionary<Registration, Func<IEnumerable<Measurement<long>>>> OpenHoldsObservers = new();

    private static readonly ObservableGauge<long> OpenHolds = Meter.CreateObservableGauge("lava.holds.open",
        () => OpenHoldsObservers.Values.SelectMany(observe => observe()), "{hold}",
        "Holds open now (active and not expired), across all merchants of the database.");

    private static readonly Counter<long> ExportRows = Meter.CreateCounter<long>("lava.export.rows", "{row}",
        "Rows written by finance exports, by format.");

    private static readonly Counter<long> MerchantRefusals = Meter.CreateCounter<long>("lava.merchant.limited", "{call}",
        "Calls refused with 429 because their merchant already had as many of that kind (requests, batches) running and waiting as it may.");

    private static readonly Counter<long> WebhookDeliveries = Meter.CreateCounter<long>("lava.webhooks.deliveries", "{delivery}",
        "Webhook delivery attempts, by outcome (delivered, failed, disabled) and the receiver's HTTP status (or none).");

    private static readonly Histogram<double> WebhookDeliveryDuration = Meter.CreateHistogram("lava.webhooks.delivery.duration", "s",
        "Time of one webhook delivery attempt, until the receiver answered or the attempt failed.", advice: SecondsBuckets);

    /// <summary>One usage report answered: <paramref name="outcome"/> posted, replayed or refused (with the problem code).</summary>
    public static void Reported(string outcome, string? reason = null)
    {
        if (reason is null) Reports.Add(1, new KeyValuePair<string, object?>("outcome", outcome));
        else Reports.Add(1, new("outcome", outcome), new("reason", reason));
    }

    /// <summary>
    /// Holds still open (active and not expired), counted by <paramref name="observe"/> at each collection until the
    /// returned registration is disposed. One gauge whatever the number of hosts in the process (tests run many), each
    /// host's count tagged with the database (<c>db.namespace</c>) it was counted in.
    /// </summary>
    public static IDisposable ObserveOpenHolds(Func<IEnumerable<Measurement<long>>> observe)
    {
        var registration = new Registration();
        OpenHoldsObservers[registration] = observe;
        return registration;
    }

    private sealed class Registration : IDisposable
    {
        public void Dispose() => OpenHoldsObservers.TryRemove(this, out _);
    }

    /// <summary>Times one posting transaction: <c>using var _ = LavaMetrics.Posting();</c>.</summary>
    public static Timer Posting() => new(PostDuration, default);

    /// <summary>A report joined the group-commit queue.</summary>
    public static void GroupCommitQueued(int reports) => QueueDepth.Add(reports);

    /// <summary>A writer took <paramref name="reports"/> off the queue to post them in one transaction.</summary>
    public static void GroupCommitTaken(int reports)
    {
        QueueDepth.Add(-reports);
        BatchSize.Record(reports);
    }

    /// <summary>A writer took a report queued at <paramref name="queuedAt"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    public static void GroupCommitWaited(long queuedAt) => QueueWait.Record(Stopwatch.GetElapsedTime(queuedAt).TotalSeconds);

    public static void GatewayCalled(string provider, int status) =>
        GatewayCalls.Add(1, new("provider", provider), new("status", status.ToString(System.Globalization.CultureInfo.InvariantCulture)));

    /// <summary>A provider call that got no HTTP answer; <paramref name="failure"/> is the resilience pipeline's exception.</summary>
    public static void GatewayFailed(string provider, Exception failure) =>
        GatewayCalls.Add(1, new("provider", provider), new("status", failure switch
        {
            Polly.Timeout.TimeoutRejectedException => "timeout",
            Polly.CircuitBreaker.BrokenCircuitException => "circuit_open",
            _ => "unreachable",
        }));

    /// <summary>The gateway's own time before the provider is called, from <paramref name="startedAt"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    public static void GatewayBefore(long startedAt) =>
        GatewayAdded.Record(Stopwatch.GetElapsedTime(startedAt).TotalSeconds, new KeyValuePair<string, object?>("phase", "before"));

    public static void GatewayPostingGathered(string endedBy) => GatewayPostings.Add(1, new KeyValuePair<string, object?>("ended_by", endedBy));

    /// <summary>Times the gateway's billing after the provider answered: <c>using var _ = LavaMetrics.GatewayAfter();</c>.</summary>
    public static Timer GatewayAfter() => new(GatewayAdded, new("phase", "after"));

    public static void MerchantLimited(Http.MerchantLimits.Kind kind) =>
        MerchantRefusals.Add(1, new KeyValuePair<string, object?>("kind", kind == Http.MerchantLimits.Kind.Batches ? "batches" : "requests"));

    public static void Exported(string format, long rows) => ExportRows.Add(rows, new KeyValuePair<string, object?>("format", format));

    /// <summary>
    /// One webhook delivery attempt. <paramref name="outcome"/>: delivered, failed or disabled; <paramref name="status"/>: the
    /// receiver's HTTP status, null when it never answered.
    /// </summary>
    public static void WebhookDelivered(string outcome, int? status, TimeSpan duration)
    {
        var statusTag = new KeyValuePair<string, object?>("status",
            status?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "none");
        WebhookDeliveries.Add(1, new("outcome", outcome), statusTag);
        WebhookDeliveryDuration.Record(duration.TotalSeconds, new KeyValuePair<string, object?>("outcome", outcome));
    }

    /// <summary>Records the time from its creation to its disposal into a histogram.</summary>
    public readonly struct Timer(Histogram<double> histogram, KeyValuePair<string, object?> tag) : IDisposable
    {
        private readonly long _startedAt = Stopwatch.GetTimestamp();

        public void Dispose()
        {
            var seconds = Stopwatch.GetElapsedTime(_startedAt).TotalSeconds;
            if (tag.Key is null) histogram.Record(seconds);
            else histogram.Record(seconds, tag);
        }
    }
}
