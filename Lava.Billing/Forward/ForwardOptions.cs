namespace Lava.Billing.Forward;

/// <summary>
/// Gateway configuration (section <c>Forward</c>). Every knob has a bound: the allow-list, a timeout per upstream host,
/// at most two retries honouring at most 2 s of Retry-After, and a circuit breaker per upstream.
/// </summary>
public sealed class ForwardOptions
{
    /// <summary>The SDK 11.2.0 <c>providers</c> map: the default allow-list, https only.</summary>
    public static readonly string[] DefaultUpstreams =
    [
        "https://api.openai.com/v1", "https://api.anthropic.com/v1", "https://api.mistral.ai/v1", "https://api.deepseek.com/v1",
        "https://api.x.ai/v1", "https://generativelanguage.googleapis.com/v1beta", "https://generativelanguage.googleapis.com/v1beta/openai",
        "https://api.kluster.ai/v1", "https://api.inference.net/v1", "https://api.groq.com/openai/v1", "https://api.novita.ai/v3/openai",
        "https://api.v0.dev/v1", "https://api.together.xyz/v1", "https://api.hyperbolic.xyz/v1", "https://api.elevenlabs.io/v1",
        "https://api.sambanova.ai/v1", "https://api.deepinfra.com/v1/openai", "https://api.cohere.ai/compatibility/v1",
        "https://api.parasail.io/v1", "https://api.studio.nebius.com/v1", "https://api.fireworks.ai/inference/v1",
        "https://api.embercloud.ai/v1", "https://api.cerebras.ai/v1", "https://api.targon.com/v1", "https://api.gmi-serving.com/v1",
        "https://llm.chutes.ai/v1", "https://inference.baseten.co/v1", "https://api.moonshot.ai/v1",
    ];

    public const int MaxRetries = 2;
    public static readonly TimeSpan MaxRetryAfter = TimeSpan.FromSeconds(2);

    public required IReadOnlyList<AllowedUpstream> AllowedUpstreams { get; init; }
    public required IReadOnlyDictionary<string, string> ManagedKeys { get; init; }
    public required TimeSpan Timeout { get; init; }
    public required IReadOnlyDictionary<string, TimeSpan> HostTimeouts { get; init; }
    public required double BreakerFailureRatio { get; init; }
    public required int BreakerMinimumThroughput { get; init; }
    public required TimeSpan BreakerSamplingDuration { get; init; }
    public required TimeSpan BreakerBreakDuration { get; init; }

    /// <summary>Output tokens assumed for the hold when a call names no max_tokens.</summary>
    public long DefaultMaxOutputTokens { get; init; } = 4096;
    /// <summary>Audio seconds assumed for the hold of a per-minute meter when a call's length is unknown.</summary>
    public decimal DefaultHoldSeconds { get; init; } = 600;
    /// <summary>How often a streaming call records the usage seen so far (and that it is alive).</summary>
    public TimeSpan ProgressInterval { get; init; } = TimeSpan.FromSeconds(1);
    /// <summary>Added to the longest silence a live call may have before the settle worker treats it as cut by a crash.</summary>
    public TimeSpan RecoveryMargin { get; init; } = TimeSpan.FromSeconds(60);
    /// <summary>How often the settle worker looks for calls to settle.</summary>
    public TimeSpan SettleInterval { get; init; } = TimeSpan.FromSeconds(5);
    /// <summary>The first wait before a failed posting is tried again; it doubles per attempt up to <see cref="SettleRetryMax"/>.</summary>
    public TimeSpan SettleRetryBase { get; init; } = TimeSpan.FromSeconds(1);
    public TimeSpan SettleRetryMax { get; init; } = TimeSpan.FromMinutes(5);
    /// <summary>
    /// How long a claimed call is one settle worker's before another may take it: after a crash, how long its claims wait.
    /// A posting that outlasts it is harmless (posting is idempotent by request id).
    /// </summary>
    public TimeSpan SettleLease { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>
    /// How long the posting queue gathers served calls before it posts them: calls served meanwhile share one posting
    /// transaction (planned once) and one close, instead of one each. Off the client's path; zero posts each call at once.
    /// </summary>
    public TimeSpan PostingDelay { get; init; } = TimeSpan.FromMilliseconds(50);

    /// <summary>
    /// How long the record of a call settled without trouble (posted or released, no anomaly) is kept before the settle
    /// worker deletes it; zero keeps records forever. The ledger keeps the call's report either way.
    /// </summary>
    public TimeSpan RetainSettledCalls { get; init; } = TimeSpan.FromDays(35);

    /// <summary>
    /// How long a pending call may go without news before it counts as cut by a crash: the provider's answer may take
    /// three attempts of the host's timeout (plus short Retry-After waits), and a stream may pause that long between
    /// two reads; the margin covers the rest.
    /// </summary>
    public TimeSpan PendingLease(string host) => 3 * TimeoutFor(host) + 2 * MaxRetryAfter + RecoveryMargin;

    /// <summary>Exponential backoff with jitter (±20 %) for the <paramref name="attempt"/>-th retry of a posting.</summary>
    public TimeSpan RetryDelay(int attempt)
    {
        var exponential = SettleRetryBase.TotalMilliseconds * Math.Pow(2, Math.Clamp(attempt - 1, 0, 30));
        var capped = Math.Min(exponential, SettleRetryMax.TotalMilliseconds);
        return TimeSpan.FromMilliseconds(capped * (0.8 + 0.4 * Random.Shared.NextDouble()));
    }

    public bool IsAllowed(Uri upstream) => AllowedUpstreams.Any(a => a.Allows(upstream));

    /// <summary>Time to wait for the upstream's response headers (and between two body reads) for one host.</summary>
    public TimeSpan TimeoutFor(string host) => HostTimeouts.TryGetValue(host, out var t) ? t : Timeout;

    public string? ManagedKeyFor(string host) => ManagedKeys.TryGetValue(host, out var key) && key.Length > 0 ? key : null;

    // A key that could not be sent as a header value is a configuration mistake, told (without the key) at once.
    private static string ManagedKey(string host, string key) =>
        key.Length == 0 || ForwardHeaders.IsValidValue(key, ForwardHeaders.MaxProviderKeyChars)
            ? key
            : throw new InvalidOperationException($"Forward:ManagedKeys:{host} must be visible ASCII characters (no spaces, tabs, CR or LF).");

    /// <summary>
    /// Explicit <c>Forward:AllowedUpstreams</c> entries replace the defaults and may be http (a loopback test
    /// provider, a private deployment); the defaults are the public providers, https only.
    /// </summary>
    public static ForwardOptions From(IConfiguration configuration)
    {
        var section = configuration.GetSection("Forward");
        var configured = section.GetSection("AllowedUpstreams").GetChildren().Select(c => c.Value).OfType<string>()
            .Where(v => v.Length > 0).ToList();
        return new ForwardOptions
        {
            AllowedUpstreams = (configured.Count > 0 ? configured : DefaultUpstreams.AsEnumerable()).Select(AllowedUpstream.Parse).ToList(),
            ManagedKeys = section.GetSection("ManagedKeys").GetChildren()
                .ToDictionary(c => c.Key, c => ManagedKey(c.Key, c.Value ?? ""), StringComparer.OrdinalIgnoreCase),
            Timeout = TimeSpan.FromMilliseconds(section.GetValue("TimeoutMs", 120_000)),
            HostTimeouts = section.GetSection("TimeoutsMs").GetChildren()
                .ToDictionary(c => c.Key, c => TimeSpan.FromMilliseconds(int.Parse(c.Value ?? "", System.Globalization.CultureInfo.InvariantCulture)),
                    StringComparer.OrdinalIgnoreCase),
            BreakerFailureRatio = section.GetValue("CircuitBreaker:FailureRatio", 0.5),
            BreakerMinimumThroughput = section.GetValue("CircuitBreaker:MinimumThroughput", 10),
            BreakerSamplingDuration = TimeSpan.FromMilliseconds(section.GetValue("CircuitBreaker:SamplingMs", 30_000)),
            BreakerBreakDuration = TimeSpan.FromMilliseconds(section.GetValue("CircuitBreaker:BreakMs", 30_000)),
            DefaultMaxOutputTokens = section.GetValue("DefaultMaxOutputTokens", 4096L),
            DefaultHoldSeconds = section.GetValue("DefaultHoldSeconds", 600m),
            ProgressInterval = TimeSpan.FromMilliseconds(section.GetValue("ProgressMs", 1_000)),
            RecoveryMargin = TimeSpan.FromMilliseconds(section.GetValue("RecoveryMarginMs", 60_000)),
            SettleInterval = TimeSpan.FromMilliseconds(section.GetValue("SettleIntervalMs", 5_000)),
            SettleRetryBase = TimeSpan.FromMilliseconds(section.GetValue("SettleRetryBaseMs", 1_000)),
            SettleRetryMax = TimeSpan.FromMilliseconds(section.GetValue("SettleRetryMaxMs", 300_000)),
            SettleLease = TimeSpan.FromMilliseconds(section.GetValue("SettleLeaseMs", 120_000)),
            PostingDelay = TimeSpan.FromMilliseconds(Math.Clamp(section.GetValue("PostingDelayMs", 50), 0, 1_000)),
            RetainSettledCalls = TimeSpan.FromDays(Math.Clamp(section.GetValue("RetainSettledCallsDays", 35), 0, 36_500)),
        };
    }
}
