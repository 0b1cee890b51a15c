using Lava.Billing.Infrastructure.Observability;
using Lava.Billing.Infrastructure.Resilience;
using System.Collections.Concurrent;

namespace Lava.Billing.Webhooks;

/// <summary>
/// Delivers the outbox. Each round fans new events out to endpoints, then claims due deliveries under a lease
/// (FOR UPDATE SKIP LOCKED, so several instances share the work and one that dies lets its claims lapse) and sends
/// each on its own task. At-least-once: an attempt whose outcome was not recorded is tried again after its lease.
/// An endpoint has at most <see cref="WebhookOptions.MaxInFlightPerEndpoint"/> deliveries in flight and a merchant
/// <see cref="WebhookOptions.MaxInFlightPerMerchant"/>, across all instances (the claim counts live leases), and merchants
/// take turns in every claim, so a slow merchant uses its share of the slots and never holds back another's.
/// </summary>
public sealed class WebhookDispatcher(
    WebhookDeliveryStore deliveries, WebhookSender sender, WebhookSecrets secrets, WebhookOptions options,
    TimeProvider clock, ILogger<WebhookDispatcher> log) : BackgroundService
{
    private readonly ConcurrentDictionary<string, int> _inFlight = new();
    private readonly SemaphoreSlim _wake = new(0);
    private int _total;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (!options.Dispatch) return;
        var poll = TimeSpan.FromMilliseconds(options.PollIntervalMs);
        var outage = new OutageLog(log, clock, "Webhook dispatch");
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                while (await deliveries.FanOutAsync(options.FanOutBatch, WebhookPayloads.RenderAsync, stoppingToken) == options.FanOutBatch) { }
                await ClaimAndStartAsync(stoppingToken);
                outage.Succeeded();
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e)
            {
                if (!outage.Failed(e)) log.LogWarning("Webhook dispatch round failed, retrying after {PollMs} ms: {Error}", options.PollIntervalMs, e.Message);
            }
            try
            {
                await _wake.WaitAsync(poll, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    private async Task ClaimAndStartAsync(CancellationToken ct)
    {
        var room = options.MaxInFlight - Volatile.Read(ref _total);
        if (room <= 0) return;
        var busy = _inFlight.Where(e => e.Value >= options.MaxInFlightPerEndpoint).Select(e => e.Key).ToArray();
        foreach (var d in await deliveries.ClaimAsync(room, options.MaxInFlightPerEndpoint, options.MaxInFlightPerMerchant, busy, options.Lease, ct))
        {
            if (!TryTakeSlot(d.WebhookId))
            {
                await deliveries.ReleaseAsync(d, ct);
                continue;
            }
            _ = Task.Run(() => DeliverAsync(d, ct), CancellationToken.None);
        }
    }

    private bool TryTakeSlot(string webhookId)
    {
        var taken = false;
        _inFlight.AddOrUpdate(webhookId, _ => { taken = true; return 1; },
            (_, n) => { taken = n < options.MaxInFlightPerEndpoint; return taken ? n + 1 : n; });
        if (taken) Interlocked.Increment(ref _total);
        return taken;
    }

    private void FreeSlot(string webhookId)
    {
        _inFlight.AddOrUpdate(webhookId, 0, (_, n) => n - 1);
        _inFlight.TryRemove(new KeyValuePair<string, int>(webhookId, 0));
        Interlocked.Decrement(ref _total);
        // One pending wake-up is enough: the round it starts sees every delivery that finished before it.
        if (_wake.CurrentCount == 0) _wake.Release();
    }

    private async Task DeliverAsync(ClaimedDelivery d, CancellationToken ct)
    {
        try
        {
            var now = clock.GetUtcNow();
            var previous = d.PreviousSecret is not null && d.PreviousSecretUntil is { } until && until > now.UtcDateTime
                ? secrets.Unseal(d.PreviousSecret)
                : null;
            var result = await sender.SendAsync(d.Url, EventId(d.EventSeq), d.Payload, secrets.Unseal(d.Secret), previous, ct);
            var outcome = WebhookRetries.Decide(result, d.Attempts + 1, options, clock.GetUtcNow(), Random.Shared.NextDouble());
            await deliveries.RecordAttemptAsync(d, outcome.Status, result.StatusCode, result.Error, outcome.NextAttemptAt, outcome.DisableReason,
                CancellationToken.None);
            LavaMetrics.WebhookDelivered(outcome.DisableReason is not null ? "disabled" : outcome.Status == "pending" ? "retrying" : outcome.Status,
                result.StatusCode, clock.GetUtcNow() - now);
            if (outcome.Status == "failed")
                log.LogWarning("Webhook delivery {DeliveryId} to {WebhookId} gave up after {Attempts} attempts", d.DeliveryId, d.WebhookId, d.Attempts + 1);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // Stopping: hand the delivery back so the next instance to look need not wait out the lease.
            await ReleaseQuietlyAsync(d);
        }
        catch (Exception e)
        {
            log.LogWarning("Webhook delivery {DeliveryId} could not be attempted: {Error}", d.DeliveryId, e.Message);
            await ReleaseQuietlyAsync(d);
        }
        finally
        {
            FreeSlot(d.WebhookId);
        }
    }

    private async Task ReleaseQuietlyAsync(ClaimedDelivery d)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            await deliveries.ReleaseAsync(d, timeout.Token);
        }
        catch (Exception e)
        {
            log.LogInformation("Webhook delivery {DeliveryId} keeps its lease until it lapses: {Error}", d.DeliveryId, e.Message);
        }
    }

    /// <summary>The event's stable id: the same in every attempt and resend (Standard Webhooks' <c>webhook-id</c>).</summary>
    public static string EventId(long eventSeq) => $"evt_{eventSeq}";
}
