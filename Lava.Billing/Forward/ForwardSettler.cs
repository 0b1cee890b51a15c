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

    /// <summary>Settled calls' records deleted per round at most, in one short statement.</summary>
    internal const int PruneBatch = 500;

    /// <summary>How often old records are looked for once none are left.</summary>
    private static readonly TimeSpan PruneEvery = TimeSpan.FromHours(1);

    private DateTimeOffset _nextPrune = DateTimeOffset.MinValue;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var outage = new OutageLog(log, clock, "Gateway call settlement");
        while (!stoppingToken.IsCancellationRequested)
        {
            var settled = 0;
            try
            {
                settled = await SettleDueAsync(stoppingToken);
                await PruneAsync(stoppingToken);
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

    /// <summary>
    /// Deletes one batch of records of calls settled longer ago than <see cref="ForwardOptions.RetainSettledCalls"/>,
    /// when due: a full batch leaves the next round due too (a backlog goes one batch per round, between settlements);
    /// a short one means none are left, and the next look is <see cref="PruneEvery"/> later. Returns how many went.
    /// </summary>
    internal async Task<int> PruneAsync(CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        if (options.RetainSettledCalls <= TimeSpan.Zero || now < _nextPrune) return 0;
        var deleted = await calls.DeleteSettledAsync(now - options.RetainSettledCalls, PruneBatch, ct);
        if (deleted < PruneBatch) _nextPrune = now + PruneEvery;
        return deleted;
    }
}
