using Lava.Billing.Infrastructure.Http;

namespace Lava.Billing.Infrastructure.Resilience;

/// <summary>
/// What a background worker writes while the database is away (docs/operations.md, "Workers while the database is
/// down"): one Warning, without a stack, when its rounds start failing to reach the database; a reminder at most once
/// per <see cref="Reminder"/> while that lasts; one Information line when a round succeeds again. A worker that retries
/// every few seconds would otherwise write a line — or a stack — per round for as long as an outage lasts. Failures of
/// any other kind are left to the worker (they are not an outage, and may be a bug). One instance per worker loop.
/// </summary>
public sealed class OutageLog(ILogger log, TimeProvider clock, string worker)
{
    public static readonly TimeSpan Reminder = TimeSpan.FromMinutes(1);

    private DateTimeOffset? _since;
    private DateTimeOffset _reminded;
    private int _failedRounds;

    /// <summary>
    /// Whether <paramref name="error"/> is the database's, not one item's: unreachable, restarting, failing over (a standby
    /// answering read-only), or out of resources or failing itself (SQLSTATE classes 53 and 58: disk full, out of memory,
    /// an I/O error). A worker that settles items one by one ends its round on such an error, since no other item would
    /// get through either, and takes any other error as that item's own.
    /// </summary>
    public static bool IsOutage(Exception error) =>
        ErrorHandling.IsDatabaseUnavailable(error) || DatabaseRetry.IsConnectionFailure(error) ||
        error is Npgsql.PostgresException p && (p.SqlState.StartsWith("53", StringComparison.Ordinal) || p.SqlState.StartsWith("58", StringComparison.Ordinal));

    /// <summary>
    /// Whether a worker settling items one by one takes <paramref name="error"/> as the item's own, to retry next round
    /// while the others go on: not an outage (<see cref="IsOutage"/>), nor the worker stopping.
    /// </summary>
    public static bool IsItemFailure(Exception error, CancellationToken stopping) => !IsOutage(error) && !stopping.IsCancellationRequested;

    /// <summary>Records a failed round; false when <paramref name="error"/> is not the database being unreachable.</summary>
    public bool Failed(Exception error)
    {
        if (!IsOutage(error)) return false;
        var now = clock.GetUtcNow();
        _failedRounds++;
        if (_since is null)
        {
            _since = _reminded = now;
            log.LogWarning("{Worker} cannot reach the database ({Failure}: {Reason}); it keeps trying, and says so at most once a minute",
                worker, error.GetType().Name, error.Message);
        }
        else if (now - _reminded >= Reminder)
        {
            _reminded = now;
            log.LogWarning("{Worker} still cannot reach the database after {Seconds} s ({FailedRounds} rounds failed)",
                worker, (long)(now - _since.Value).TotalSeconds, _failedRounds);
        }
        return true;
    }

    /// <summary>Records a round that reached the database.</summary>
    public void Succeeded()
    {
        if (_since is not { } since) return;
        log.LogInformation("{Worker} reaches the database again after {Seconds} s ({FailedRounds} rounds failed)",
            worker, (long)(clock.GetUtcNow() - since).TotalSeconds, _failedRounds);
        _since = null;
        _failedRounds = 0;
    }
}
