namespace Lava.Billing.Webhooks;

/// <summary>The <c>Webhooks</c> configuration section.</summary>
public sealed class WebhookOptions
{
    /// <summary>
    /// Standard Webhooks' schedule (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), stretched by two more
    /// day-long waits so the last try comes about 3 days after the first.
    /// </summary>
    public static readonly double[] DefaultRetryScheduleSeconds = [5, 300, 1800, 7200, 18000, 36000, 36000, 86400, 86400];

    /// <summary>false: this instance serves the API but leaves delivering to others (or to its next start).</summary>
    public bool Dispatch { get; set; } = true;

    /// <summary>Loopback, private and link-local addresses are refused (at creation and when connecting) unless true.</summary>
    public bool AllowPrivateAddresses { get; set; }

    /// <summary>Base64 of 32 bytes: seals webhook secrets at rest with AES-GCM. Unset, secrets are stored unsealed.</summary>
    public string? SecretEncryptionKey { get; set; }

    /// <summary>Waits after each failed attempt, before jitter; the delivery fails for good after the last.</summary>
    public double[]? RetryScheduleSeconds { get; set; }

    /// <summary>Each wait is stretched or shrunk at random by up to this fraction, so failed endpoints are not retried in step.</summary>
    public double JitterFraction { get; set; } = 0.2;

    public int AttemptTimeoutMs { get; set; } = 15_000;

    /// <summary>How long a Retry-After may push the next attempt back at most.</summary>
    public int MaxRetryAfterSeconds { get; set; } = 86_400;

    /// <summary>Deliveries one endpoint may have in flight, from all service instances together.</summary>
    public int MaxInFlightPerEndpoint { get; set; } = 4;

    /// <summary>
    /// Deliveries one merchant may have in flight, all its endpoints and every instance together: a merchant with many
    /// slow endpoints holds this many slots, never an instance's every one.
    /// </summary>
    public int MaxInFlightPerMerchant { get; set; } = 16;

    /// <summary>Deliveries in flight from one service instance, all endpoints together.</summary>
    public int MaxInFlight { get; set; } = 64;

    public int PollIntervalMs { get; set; } = 500;

    /// <summary>Events fanned out to endpoints per round.</summary>
    public int FanOutBatch { get; set; } = 500;

    /// <summary>How long the previous secret keeps signing after a roll when the call names no overlap.</summary>
    public int DefaultSecretOverlapSeconds { get; set; } = 86_400;

    public IReadOnlyList<TimeSpan> RetrySchedule =>
        (RetryScheduleSeconds is { Length: > 0 } s ? s : DefaultRetryScheduleSeconds).Select(TimeSpan.FromSeconds).ToList();

    /// <summary>A claimed delivery is owned this long: the attempt's timeout plus room to record its outcome.</summary>
    public TimeSpan Lease => TimeSpan.FromMilliseconds(AttemptTimeoutMs) + TimeSpan.FromSeconds(30);
}
