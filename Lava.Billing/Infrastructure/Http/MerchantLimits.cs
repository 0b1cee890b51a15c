using System.Collections.Concurrent;
using System.ComponentModel.DataAnnotations;
using Microsoft.Extensions.Options;

namespace Lava.Billing.Infrastructure.Http;

/// <summary>Configuration section <c>Limits:PerMerchant</c> (docs/operations.md, "One merchant's share").</summary>
public sealed record MerchantLimitOptions
{
    /// <summary>Calls of one merchant that may work in the database at once (all but batches, and single reports while group commit is on).</summary>
    [Range(1, 1000)] public int Requests { get; init; } = 8;

    /// <summary>Such calls of one merchant waiting for their turn; beyond, 429 with Retry-After.</summary>
    [Range(0, 100_000)] public int RequestsWaiting { get; init; } = 64;

    /// <summary>Batches of reports (<c>/v1/requests/batch</c>) of one merchant posting at once.</summary>
    [Range(1, 1000)] public int Batches { get; init; } = 2;

    /// <summary>Batches of one merchant waiting for their turn; beyond, 429 with Retry-After.</summary>
    [Range(0, 10_000)] public int BatchesWaiting { get; init; } = 8;
}

/// <summary>
/// One merchant's share of the database: every call that works in the service's pool takes a turn of its merchant's
/// (<see cref="MerchantLimitOptions"/>), so one merchant's flood, or its calls stuck behind rows another transaction
/// holds, take that many connections at most and leave the rest of the pool to the others. Waiting calls hold nothing
/// but their place and are served in the order they came; past the waiting bound a call is refused with 429 and
/// Retry-After, before anything ran. Most routes take their turn here, in the middleware; the gateway's take theirs by
/// hand around their admission only (not while the body arrives, nor while the provider answers), and an export gives
/// its turn back once it streams (its own pool and limits, <c>ExportLimits</c>). Single reports take none while group
/// commit queues them per merchant and posts them on connections of its own.
/// </summary>
public sealed class MerchantLimits(IOptions<MerchantLimitOptions> options)
{
    public const int RetryAfterSeconds = 1;

    public enum Kind
    {
        Requests,
        Batches,
    }

    internal const string ItemKey = "lava.merchant_turn";

    private sealed class Line(int running)
    {
        public readonly SemaphoreSlim Running = new(running, running);
        public int Waiting;
    }

    // One line per merchant and kind that ever called: a few hundred bytes each, and merchants are made by operators.
    private readonly ConcurrentDictionary<(string MerchantId, Kind Kind), Line> _lines = new();

    /// <summary>A turn, given back once (disposing it again does nothing).</summary>
    public sealed class Turn(SemaphoreSlim running) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) running.Release();
        }
    }

    /// <summary>The merchant's next turn of <paramref name="kind"/>, after the calls before it; null when too many wait already.</summary>
    public Task<Turn?> EnterAsync(string merchantId, Kind kind, CancellationToken ct) => EnterAsync(merchantId, kind, bounded: true, ct);

    /// <summary>
    /// The merchant's next turn, however many wait: for a call that must not be refused (a usage report posted on its
    /// caller's time describes work that already ran), so the merchant's flood waits instead (backpressure).
    /// </summary>
    public async Task<Turn> WaitForTurnAsync(string merchantId, Kind kind, CancellationToken ct) =>
        (await EnterAsync(merchantId, kind, bounded: false, ct))!;

    /// <summary>Calls of the merchant waiting for a turn of <paramref name="kind"/> now.</summary>
    internal int Waiting(string merchantId, Kind kind) => _lines.TryGetValue((merchantId, kind), out var line) ? Volatile.Read(ref line.Waiting) : 0;

    private async Task<Turn?> EnterAsync(string merchantId, Kind kind, bool bounded, CancellationToken ct)
    {
        var o = options.Value;
        var line = _lines.GetOrAdd((merchantId, kind), static (key, o) => new Line(key.Kind == Kind.Batches ? o.Batches : o.Requests), o);
        if (line.Running.Wait(0)) return new Turn(line.Running);
        if (Interlocked.Increment(ref line.Waiting) > (kind == Kind.Batches ? o.BatchesWaiting : o.RequestsWaiting) && bounded)
        {
            Interlocked.Decrement(ref line.Waiting);
            return null;
        }
        try
        {
            await line.Running.WaitAsync(ct);
        }
        finally
        {
            Interlocked.Decrement(ref line.Waiting);
        }
        return new Turn(line.Running);
    }

    /// <summary>The answer to a call refused its turn (counted in <c>lava_merchant_limited_total</c>).</summary>
    public static ProblemResult Refused(Kind kind)
    {
        Observability.LavaMetrics.MerchantLimited(kind);
        return Problems.TooManyAtOnce(kind, RetryAfterSeconds);
    }

    /// <summary>Gives the call's turn back early: it goes on without the service's pool (an export, once it streams).</summary>
    public static void Leave(HttpContext context)
    {
        if (context.Items[ItemKey] is Turn turn) turn.Dispose();
    }

    /// <summary>Route metadata: the turn its calls take; <c>null</c>, none.</summary>
    public sealed record LimitMetadata(Kind? Kind);
}

public static class MerchantLimitsHttp
{
    /// <summary>The turn each call takes, by its route's metadata; after auth, which names the merchant.</summary>
    public static IApplicationBuilder UseMerchantLimits(this IApplicationBuilder app) =>
        app.Use(async (context, next) =>
        {
            var metadata = context.GetEndpoint()?.Metadata.GetMetadata<MerchantLimits.LimitMetadata>();
            var kind = metadata is null ? MerchantLimits.Kind.Requests : metadata.Kind;
            if (context.Items[Caller.ItemKey] is not Caller caller || kind is null)
            {
                await next(context);
                return;
            }
            var limits = context.RequestServices.GetRequiredService<MerchantLimits>();
            using var turn = await limits.EnterAsync(caller.MerchantId, kind.Value, context.RequestAborted);
            if (turn is null)
            {
                await MerchantLimits.Refused(kind.Value).ExecuteAsync(context);
                return;
            }
            context.Items[MerchantLimits.ItemKey] = turn;
            await next(context);
        });

    /// <summary>
    /// Calls of this route take a turn of their merchant's <paramref name="kind"/> (every route does by default:
    /// <see cref="MerchantLimits.Kind.Requests"/>).
    /// </summary>
    public static TBuilder WithMerchantTurn<TBuilder>(this TBuilder builder, MerchantLimits.Kind kind) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new MerchantLimits.LimitMetadata(kind));

    /// <summary>
    /// Calls of this route take no turn here: single reports (group commit bounds them per merchant; with it off, the
    /// handler takes one) and the gateway (its handlers take one around their admission only).
    /// </summary>
    public static TBuilder WithoutMerchantTurn<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new MerchantLimits.LimitMetadata(null));
}
