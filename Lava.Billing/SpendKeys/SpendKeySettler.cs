using Lava.Billing.Forward;

namespace Lava.Billing.SpendKeys;

/// <summary>
/// Settles spend-key calls whose process died between the hold and its capture (the crash rule, docs/spend-keys.md),
/// so no hold stays reserved for ever. Runs in every instance at the gateway's settle interval; instances may settle
/// side by side, since each capture re-checks the charge under its row lock and only the first one posts.
/// </summary>
public sealed class SpendKeySettler(SpendKeyLimits limits, ForwardOptions options, TimeProvider clock, ILogger<SpendKeySettler> log)
    : BackgroundService
{
    /// <summary>Charges settled per round; the rest wait for the next one.</summary>
    private const int MaxPerRound = 100;

    /// <summary>
    /// One round: the ends of calls this instance could not write first (a release written now is not billed below),
    /// then the held charges past their deadline. Returns how many of those were settled.
    /// </summary>
    internal async Task<int> RoundAsync(CancellationToken ct)
    {
        await limits.WriteUnwrittenAsync(ct);
        var settled = await limits.SettleCrashedAsync(MaxPerRound, ct);
        if (settled > 0)
            log.LogWarning("{Count} spend-key calls were cut by a crash; each was billed its last recorded usage, flagged estimated", settled);
        return settled;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var settled = 0;
            try
            {
                settled = await RoundAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                // The database is away; the next round tries again.
                log.LogWarning("Settling spend-key calls failed ({Failure}); trying again in {IntervalMs} ms", e.GetType().Name,
                    (long)options.SettleInterval.TotalMilliseconds);
            }
            if (settled >= MaxPerRound) continue;
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
