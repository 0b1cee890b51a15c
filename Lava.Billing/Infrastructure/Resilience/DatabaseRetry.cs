using System.Net.Sockets;
using Npgsql;
using Polly;
using Polly.Retry;

namespace Lava.Billing.Infrastructure.Resilience;

/// <summary>Database retry settings (configuration section <c>Database:Retry</c>).</summary>
public sealed class DatabaseRetryOptions
{
    /// <summary>Attempts after the first (0: none); with the delays below they span about 20 s, longer than a Patroni failover.</summary>
    public int MaxRetries { get; init; } = 12;
    public int FirstDelayMs { get; init; } = 100;
    public int MaxDelayMs { get; init; } = 2_000;
}

/// <summary>
/// Rides through a primary failover: work that is safe to repeat is run again while the database cannot be reached, the
/// primary went away mid-transaction, or the host reached is no longer the primary. Only idempotent work goes through
/// here — usage reports, which a repeat answers from the stored original (same request id) — never a provider call.
/// </summary>
public sealed class DatabaseRetry
{
    private readonly ResiliencePipeline _pipeline;

    public DatabaseRetry(NpgsqlDataSource db, DatabaseRetryOptions options, ILogger<DatabaseRetry> log)
    {
        // 0 turns retrying off (Polly's retry needs at least one attempt).
        _pipeline = options.MaxRetries <= 0 ? ResiliencePipeline.Empty : new ResiliencePipelineBuilder().AddRetry(new RetryStrategyOptions
        {
            ShouldHandle = new PredicateBuilder().Handle<Exception>(IsConnectionFailure),
            MaxRetryAttempts = options.MaxRetries,
            Delay = TimeSpan.FromMilliseconds(Math.Max(options.FirstDelayMs, 1)),
            MaxDelay = TimeSpan.FromMilliseconds(Math.Max(options.MaxDelayMs, 1)),
            BackoffType = DelayBackoffType.Exponential,
            UseJitter = true,
            OnRetry = args =>
            {
                // Pooled connections to the old primary are dead, and Npgsql remembers each host's role for a while:
                // drop both, so the next attempt finds the new primary instead of failing once per stale connection.
                db.Clear();
                (db as NpgsqlMultiHostDataSource)?.ClearDatabaseStates();
                log.LogWarning("Database unreachable or not primary ({Error}); retry {Attempt} in {Delay} ms",
                    args.Outcome.Exception?.GetType().Name, args.AttemptNumber + 1, (int)args.RetryDelay.TotalMilliseconds);
                return ValueTask.CompletedTask;
            },
        }).Build();
    }

    public ValueTask<T> ExecuteAsync<T>(Func<CancellationToken, ValueTask<T>> work, CancellationToken ct) =>
        _pipeline.ExecuteAsync(work, ct);

    /// <summary>
    /// The database could not be reached, dropped the connection, is shutting down or starting, or is a standby (read-only):
    /// what was sent either never ran or rolled back, or — a commit whose answer was lost — is found again by its key.
    /// </summary>
    public static bool IsConnectionFailure(Exception e) => e switch
    {
        PostgresException p => p.SqlState.StartsWith("08", StringComparison.Ordinal)
                               || p.SqlState is PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown
                                   or PostgresErrorCodes.CannotConnectNow or PostgresErrorCodes.ReadOnlySqlTransaction,
        NpgsqlException n => n.InnerException is SocketException or IOException or TimeoutException or EndOfStreamException
                             || n.InnerException is NpgsqlException inner && IsConnectionFailure(inner)
                             || n.Message.Contains("suitable host", StringComparison.OrdinalIgnoreCase)
                             || n.IsTransient,
        SocketException or EndOfStreamException => true,
        _ => false,
    };
}
