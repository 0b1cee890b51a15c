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

    public bool IsAllowed(Uri upstream) => AllowedUpstreams.Any(a => a.Allows(upstream));

    /// <summary>Time to wait for the upstream's response headers (and between two body reads) for one host.</summary>
    public TimeSpan TimeoutFor(string host) => HostTimeouts.TryGetValue(host, out var t) ? t : Timeout;

    public string? ManagedKeyFor(string host) => ManagedKeys.TryGetValue(host, out var key) && key.Length > 0 ? key : null;

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
                .ToDictionary(c => c.Key, c => c.Value ?? "", StringComparer.OrdinalIgnoreCase),
            Timeout = TimeSpan.FromMilliseconds(section.GetValue("TimeoutMs", 120_000)),
            HostTimeouts = section.GetSection("TimeoutsMs").GetChildren()
                .ToDictionary(c => c.Key, c => TimeSpan.FromMilliseconds(int.Parse(c.Value ?? "", System.Globalization.CultureInfo.InvariantCulture)),
                    StringComparer.OrdinalIgnoreCase),
            BreakerFailureRatio = section.GetValue("CircuitBreaker:FailureRatio", 0.5),
            BreakerMinimumThroughput = section.GetValue("CircuitBreaker:MinimumThroughput", 10),
            BreakerSamplingDuration = TimeSpan.FromMilliseconds(section.GetValue("CircuitBreaker:SamplingMs", 30_000)),
            BreakerBreakDuration = TimeSpan.FromMilliseconds(section.GetValue("CircuitBreaker:BreakMs", 30_000)),
        };
    }
}
