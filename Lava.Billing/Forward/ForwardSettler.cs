using Lava.Billing.Infrastructure.Resilience;

namespace Lava.Billing.Forward;

/// <summary>
/// Settles gateway calls their own request could not: served calls whose posting failed (retried with exponential
/// backoff until posted) and pending calls whose process died mid-call (billed by the crash rule, docs/gateway.md).
/// Safe with several instances on one database: calls are claimed with FOR UPDATE SKIP LOCKED and leased while they
/// are posted, and each is posted on its own, so one that keeps failing never holds up the others.
/// </summary>
public sealed class ForwardSettler(ForwardCallStore calls, ForwardBilling billing, ForwardOptions options, TimeProvider clock,
    ILogger<ForwardSettler> log) : BackgroundService
{
    /// <summary>Calls claimed per round; the rest wait for the next one.</summary>
    private const int MaxClaim = 100;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var outage = new OutageLog(log, clock, "Gateway call settlement");
        while (!stoppingToken.IsCancellationRequested)
        {
            var settled = 0;
            try
            {
                settled = await SettleDueAsync(stoppingToken);
                outage.Succeeded();
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The next round tries again.
                if (!outage.Failed(e)) log.LogWarning("Settling gateway calls failed ({Failure}); trying again in {IntervalMs} ms", e.GetType().Name,
                    (long)options.SettleInterval.TotalMilliseconds);
            }
            // A full round may have left more behind: go again at once.
            if (settled < MaxClaim)
            {
                try
                {
                    await Task.Delay(options.SettleInterval, clock, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    /// <summary>One round: the usage held in memory first, then the calls due in the database. Returns how many were claimed.</summary>
    internal async Task<int> SettleDueAsync(CancellationToken ct)
    {
        await billing.FlushDeferredAsync(ct);
        var now = clock.GetUtcNow();
        var due = await calls.ClaimDueAsync(MaxClaim, now + options.SettleLease, now, ct);
        foreach (var call in due)
        {
            if (call.Anomaly == ForwardBilling.Recovered && call.Attempts == 1)
                log.LogWarning("Gateway request {RequestId} of merchant {MerchantId} was cut by a crash; billing its last recorded usage, flagged estimated",
                    call.RequestId, call.MerchantId);
            await billing.SettleAsync(call, ct);
        }
        return due.Count;
    }
}
