using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Polly;
using Polly.CircuitBreaker;
using Polly.Retry;
using Polly.Timeout;

namespace Lava.Billing.Forward;

/// <summary>
/// The one outgoing HTTP client and, per upstream (scheme, host and port), a resilience pipeline: retry, circuit
/// breaker, timeout. A retry only happens where the provider cannot have done (or billed) any work: the connection
/// was never made, or it answered 429/503 with a Retry-After of at most 2 s, before any byte went back to the client.
/// Redirects are never followed: a 3xx goes back to the caller, so an allowed host cannot send us somewhere else.
/// </summary>
public sealed class UpstreamClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly ForwardOptions _options;
    private readonly TimeProvider _clock;
    private readonly ConcurrentDictionary<string, ResiliencePipeline<HttpResponseMessage>> _pipelines = new(StringComparer.OrdinalIgnoreCase);

    public UpstreamClient(ForwardOptions options, TimeProvider clock)
    {
        _options = options;
        _clock = clock;
        _http = new HttpClient(new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.All,
            UseCookies = false,
            ConnectTimeout = TimeSpan.FromSeconds(10),
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        })
        {
            // The pipeline's timeout governs; a stream may legitimately run far longer than any fixed limit.
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

    /// <summary>
    /// Sends a request built afresh for every attempt (a sent request cannot be sent again) and returns once the
    /// response headers arrived; the body is the caller's to stream. Throws <see cref="TimeoutRejectedException"/>,
    /// <see cref="BrokenCircuitException"/> or <see cref="HttpRequestException"/> when it gives up.
    /// </summary>
    public async Task<HttpResponseMessage> SendAsync(Uri upstream, Func<HttpRequestMessage> build, CancellationToken ct)
    {
        var pipeline = _pipelines.GetOrAdd(upstream.GetLeftPart(UriPartial.Authority), _ => Build(upstream.IdnHost));
        return await pipeline.ExecuteAsync(
            async token => await _http.SendAsync(build(), HttpCompletionOption.ResponseHeadersRead, token), ct);
    }

    private ResiliencePipeline<HttpResponseMessage> Build(string host) =>
        new ResiliencePipelineBuilder<HttpResponseMessage> { TimeProvider = _clock }
            .AddRetry(new RetryStrategyOptions<HttpResponseMessage>
            {
                MaxRetryAttempts = ForwardOptions.MaxRetries,
                BackoffType = DelayBackoffType.Constant,
                Delay = TimeSpan.FromMilliseconds(100),
                UseJitter = false,
                ShouldHandle = args => ValueTask.FromResult(args.Outcome switch
                {
                    { Exception: { } e } => NeverReachedProvider(e),
                    { Result: { } r } => RetryAfter(r, _clock.GetUtcNow()) is not null,
                    _ => false,
                }),
                DelayGenerator = args => ValueTask.FromResult(args.Outcome.Result is { } r ? RetryAfter(r, _clock.GetUtcNow()) : null),
                OnRetry = args =>
                {
                    args.Outcome.Result?.Dispose();
                    return ValueTask.CompletedTask;
                },
            })
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions<HttpResponseMessage>
            {
                FailureRatio = _options.BreakerFailureRatio,
                MinimumThroughput = _options.BreakerMinimumThroughput,
                SamplingDuration = _options.BreakerSamplingDuration,
                BreakDuration = _options.BreakerBreakDuration,
                ShouldHandle = args => ValueTask.FromResult(args.Outcome switch
                {
                    { Exception: HttpRequestException or TimeoutRejectedException } => true,
                    { Result: { } r } => (int)r.StatusCode >= 500,
                    _ => false,
                }),
            })
            .AddTimeout(_options.TimeoutFor(host))
            .Build();

    /// <summary>The connection was refused or never established: no byte of the request reached the provider.</summary>
    internal static bool NeverReachedProvider(Exception e) =>
        e is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError, InnerException: SocketException };

    /// <summary>How long a 429/503 asks us to wait, when that is short enough to wait for; null otherwise.</summary>
    internal static TimeSpan? RetryAfter(HttpResponseMessage response, DateTimeOffset now)
    {
        if (response.StatusCode is not (HttpStatusCode.TooManyRequests or HttpStatusCode.ServiceUnavailable)) return null;
        var header = response.Headers.RetryAfter;
        var delay = header?.Delta ?? (header?.Date is { } date ? date - now : null);
        if (delay is not { } d) return null;
        if (d < TimeSpan.Zero) d = TimeSpan.Zero;
        return d <= ForwardOptions.MaxRetryAfter ? d : null;
    }

    public void Dispose() => _http.Dispose();
}
