using System.Buffers;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Infrastructure.Observability;
using Microsoft.AspNetCore.Http.Features;
using Polly.CircuitBreaker;
using Polly.Timeout;

namespace Lava.Billing.Forward;

/// <summary>
/// Calls the provider and relays its answer to the client while reading its usage, by one set of rules for every billed
/// route (/v1/forward, /v1/rewrite and spend keys; docs/gateway.md): a read that waits longer than the provider's timeout
/// cuts the answer; a cut answer (that stall, the provider breaking off, the client leaving) is billed the estimate of
/// what was relayed; the usage is made durable before the client has the end of the answer; a client that leaves before
/// the provider answered is billed the prompt's estimate; a provider that fails or answers an error costs nothing.
/// </summary>
public sealed class ForwardRelay(ForwardOptions options, UpstreamClient upstream, TimeProvider clock, ILogger<ForwardRelay> log)
{
    private const int CopyBufferBytes = 16 * 1024;

    /// <summary>
    /// The call, from the provider's request to its end; every way out bills it or releases it. Returns the problem to
    /// answer when the provider failed, else an empty result: the answer went to the client, or the client left.
    /// </summary>
    public async Task<IResult> RunAsync(HttpContext http, RelayCall call, IRelayBilling billing)
    {
        var ct = http.RequestAborted;
        var progress = new CallProgress();
        try
        {
            // A client that left while the call was being admitted never reaches the provider: the finally releases the call.
            ct.ThrowIfCancellationRequested();
            return await CallAsync(http, call, billing, progress, ct);
        }
        finally
        {
            if (!progress.Settled) await SettleUnforeseenAsync(call, billing, progress);
        }
    }

    // Something unforeseen broke the call: once the provider answered with success its work is owed, billed on what was
    // seen of its usage (the estimate when its count never passed by), whether or not the client received any of it;
    // a call the provider never answered so is released. Never throws, so the exception that got here is the one the
    // error handler sees.
    private async Task SettleUnforeseenAsync(RelayCall call, IRelayBilling billing, CallProgress progress)
    {
        try
        {
            if (progress.Answered)
            {
                var (billed, anomaly) = Bounded(call, progress.Usage, cut: true);
                await ServeAndPostAsync(billing, billed, anomaly);
            }
            else await ReleaseAsync(call, billing);
        }
        catch (Exception e)
        {
            log.LogError("Gateway call {CallId} of merchant {MerchantId} failed and could not be settled ({Failure}); the settle worker bills it by the crash rule",
                call.CallId, call.MerchantId, e.GetType().Name);
        }
    }

    /// <summary>How far a call got, so the way out knows whether to bill or release.</summary>
    private sealed class CallProgress
    {
        /// <summary>Billed or released: nothing left to do.</summary>
        public bool Settled;
        /// <summary>The provider answered with success: it did the work, so the call is owed.</summary>
        public bool Answered;
        public UsageReader? Usage;
    }

    private async Task<IResult> CallAsync(HttpContext http, RelayCall call, IRelayBilling billing, CallProgress progress, CancellationToken ct)
    {
        var target = call.Upstream;
        HttpResponseMessage response;
        LavaMetrics.GatewayBefore(call.StartedAt);
        try
        {
            response = await upstream.SendAsync(target, call.BuildRequest, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client left before the provider answered. The provider may already be working: bill the prompt, flagged.
            progress.Settled = true;
            await ServeAndPostAsync(billing, Initial(call.Format, call.Price, call.Inspected), null);
            return Results.Empty;
        }
        catch (Exception e) when (e is TimeoutRejectedException or BrokenCircuitException or HttpRequestException)
        {
            LavaMetrics.GatewayFailed(target.IdnHost, e);
            log.LogWarning("Gateway call {CallId}: upstream {Upstream} failed: {Failure}",
                call.CallId, target.GetLeftPart(UriPartial.Authority), e.GetType().Name);
            progress.Settled = true;
            await ReleaseAsync(call, billing);
            return e switch
            {
                TimeoutRejectedException => Problems.UpstreamTimeout("The provider did not answer in time; nothing was charged."),
                BrokenCircuitException => Problems.UpstreamUnavailable(
                    "The provider is failing; calls to it are paused for a moment. Nothing was charged."),
                _ => Problems.UpstreamUnavailable("The provider could not be reached; nothing was charged."),
            };
        }
        using (response)
            await RelayAsync(http, response, call, billing, progress, ct);
        return Results.Empty;
    }

    /// <summary>
    /// Streams the answer to the client while reading its usage. The usage is made durable before the client has the
    /// end of the answer: in an event stream, as soon as the provider's final count passes by (before that event is
    /// relayed); in any other body, by holding its last chunk back until the usage is written; a translated body, which
    /// its translator holds whole, is written after. While a stream runs, the usage seen so far is recorded every
    /// <see cref="ForwardOptions.ProgressInterval"/>, which is what a crash bills. An error answer is released first.
    /// </summary>
    private async Task RelayAsync(HttpContext http, HttpResponseMessage response, RelayCall call, IRelayBilling billing,
        CallProgress progress, CancellationToken ct)
    {
        var status = (int)response.StatusCode;
        LavaMetrics.GatewayCalled(call.Upstream.IdnHost, status);
        var succeeded = response.IsSuccessStatusCode;
        progress.Answered = succeeded;
        if (!succeeded)
        {
            // Released before the client has the error, so a retry finds the hold (and a spend key's request) given back.
            progress.Settled = true;
            await ReleaseAsync(call, billing);
        }
        http.Response.StatusCode = status;
        ForwardHeaders.CopyResponse(response, http.Response);
        if (call.RequestId is { } requestId) http.Response.Headers[ForwardProxy.RequestIdHeader] = requestId;
        http.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        var eventStream = string.Equals(response.Content.Headers.ContentType?.MediaType, "text/event-stream", StringComparison.OrdinalIgnoreCase);
        // The usage is read from the provider's bytes; only what goes to the client is translated.
        var answer = call.Translation?.Answer(status, eventStream, clock.GetUtcNow());
        if (answer is not null)
        {
            http.Response.ContentLength = null;
            http.Response.ContentType = answer.ContentType;
        }
        var usage = new UsageReader(call.Format, eventStream);
        progress.Usage = usage;
        var stallLimit = options.TimeoutFor(call.Upstream.IdnHost);
        var cut = false;
        var lastProgress = clock.GetTimestamp();
        var buffer = ArrayPool<byte>.Shared.Rent(CopyBufferBytes);
        var held = succeeded && !eventStream && answer is null ? ArrayPool<byte>.Shared.Rent(CopyBufferBytes) : null;
        var heldLength = 0;
        try
        {
            try
            {
                await using var source = await response.Content.ReadAsStreamAsync(ct);
                while (true)
                {
                    int read;
                    using (var stall = CancellationTokenSource.CreateLinkedTokenSource(ct))
                    {
                        stall.CancelAfter(stallLimit);
                        read = await source.ReadAsync(buffer, stall.Token);
                    }
                    if (read == 0) break;
                    if (!progress.Settled)
                    {
                        usage.Feed(buffer.AsSpan(0, read));
                        if (eventStream && usage.Complete)
                        {
                            // The provider's final count: on disk before the client sees the end of the answer.
                            var (final, anomaly) = Bounded(call, usage, cut: false);
                            await ServeAsync(billing, final, anomaly);
                            // Whatever breaks from here, this usage is what the call is billed (by the settle worker at worst).
                            progress.Settled = true;
                        }
                        else if (clock.GetElapsedTime(lastProgress) >= options.ProgressInterval)
                        {
                            // Any body still flowing, event stream or not (a JSON array streamed chunk by chunk), keeps
                            // its call's deadline ahead: the settle worker must not take a live call for a crashed one.
                            await ProgressAsync(call, billing, Bounded(call, usage, cut: true).Usage);
                            lastProgress = clock.GetTimestamp();
                        }
                    }
                    if (answer is not null)
                    {
                        if (answer.Feed(buffer.AsSpan(0, read)) is { Length: > 0 } translated)
                        {
                            await http.Response.Body.WriteAsync(translated, ct);
                            await http.Response.Body.FlushAsync(ct);
                        }
                    }
                    else if (held is null)
                    {
                        await http.Response.Body.WriteAsync(buffer.AsMemory(0, read), ct);
                        await http.Response.Body.FlushAsync(ct);
                    }
                    else
                    {
                        if (heldLength > 0) await http.Response.Body.WriteAsync(held.AsMemory(0, heldLength), ct);
                        buffer.AsSpan(0, read).CopyTo(held);
                        heldLength = read;
                    }
                }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or HttpRequestException)
            {
                // The client left, or the provider stalled or broke off. Either way the upstream call ends here (the
                // response is disposed), and the client must not take a cut body for a whole one.
                cut = true;
                http.Abort();
            }

            if (!progress.Settled)
            {
                if (!cut) usage.Finish();
                var (billed, anomaly) = Bounded(call, usage, cut);
                await ServeAsync(billing, billed, anomaly);
                progress.Settled = true;
            }
            if (held is not null && heldLength > 0 && !cut) await WriteLastAsync(http, held.AsMemory(0, heldLength), ct);
            if (answer is not null && !cut) await WriteLastAsync(http, answer.Finish(), ct);
            // Its usage is on disk: posting it need not keep the client waiting for the end of the response.
            if (succeeded) await billing.PostServedAsync();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            if (held is not null) ArrayPool<byte>.Shared.Return(held);
        }
    }

    private static async Task WriteLastAsync(HttpContext http, ReadOnlyMemory<byte> last, CancellationToken ct)
    {
        if (last.IsEmpty) return;
        try
        {
            await http.Response.Body.WriteAsync(last, ct);
            await http.Response.Body.FlushAsync(ct);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            // The client left at the last moment; what the provider served is billed all the same.
            http.Abort();
        }
    }

    /// <summary>
    /// The usage to bill once the answer ended (or was cut): the provider's own count when it arrived whole and within
    /// the report limits; otherwise the gateway's estimate, flagged. A count out of range is never billed: the call is
    /// billed from the estimate and marked <see cref="UsageBounds.OutOfRange"/> for finance.
    /// </summary>
    internal static (BilledUsage Usage, string? Anomaly) Bounded(RelayCall call, UsageReader? usage, bool cut)
    {
        var inspected = call.Inspected;
        var billed = call.Format switch
        {
            // Speech is billed by the characters it was asked to speak, known before the call.
            ApiFormat.Speech => Bill(call.Price, NormalizedUsage.None with { InputCharacters = inspected.InputCharacters }, estimated: false),
            _ when usage is { Complete: true, Usage: { } exact } => Bill(call.Price, exact, estimated: false),
            _ when !ApiFormats.ReportsUsage(call.Format) => Bill(call.Price, NormalizedUsage.None, estimated: false),
            _ => Bill(call.Price, Estimate(usage?.Usage, inspected, usage?.OutputCharacters ?? 0), estimated: true),
        };
        if (UsageBounds.Within(billed.Usage, billed.ProviderCost)) return (billed, null);
        var fallback = Bill(call.Price, Estimate(null, inspected, usage?.OutputCharacters ?? 0), estimated: true);
        return UsageBounds.Within(fallback.Usage, fallback.ProviderCost)
            ? (fallback, UsageBounds.OutOfRange)
            : (Bill(call.Price, NormalizedUsage.None, estimated: true), UsageBounds.OutOfRange);
    }

    /// <summary>What a call is billed before its answer is seen: the prompt, as far as the request shows it, flagged.</summary>
    internal static BilledUsage Initial(ApiFormat format, ModelPrice? price, InspectedRequest inspected) => Bill(price, format switch
    {
        ApiFormat.Speech => NormalizedUsage.None with { InputCharacters = inspected.InputCharacters },
        _ when !ApiFormats.ReportsUsage(format) => NormalizedUsage.None,
        _ => Estimate(null, inspected, 0),
    }, estimated: true);

    /// <summary>
    /// What a call used when the provider's final count never arrived: the input the provider reported (Anthropic
    /// reports it first), else the prompt's estimate; the output reported so far, or what the text seen suggests.
    /// </summary>
    internal static NormalizedUsage Estimate(NormalizedUsage? seen, InspectedRequest request, long outputCharacters)
    {
        var input = seen is { InputTokens: > 0 } reported ? reported : new NormalizedUsage(request.InputTokensEstimate, 0, 0, 0);
        var output = Math.Max(seen?.Output ?? 0, (outputCharacters + RequestInspector.CharactersPerToken - 1) / RequestInspector.CharactersPerToken);
        return input with { Output = output, InputCharacters = request.InputCharacters };
    }

    private static BilledUsage Bill(ModelPrice? price, NormalizedUsage usage, bool estimated) =>
        new(usage, price is null ? null : ProviderCost.Compute(usage, price), estimated);

    // The answer is already on its way (or the client gone): billing never fails the call; what cannot be written
    // now is left to the settle worker.
    private static async Task ServeAndPostAsync(IRelayBilling billing, BilledUsage billed, string? anomaly)
    {
        await ServeAsync(billing, billed, anomaly);
        await billing.PostServedAsync();
    }

    /// <summary>Writes the call's usage: the gateway's time after the provider's answer (<c>phase="after"</c> in /metrics).</summary>
    private static async Task ServeAsync(IRelayBilling billing, BilledUsage billed, string? anomaly)
    {
        using var timer = LavaMetrics.GatewayAfter();
        await billing.ServeAsync(billed, anomaly);
    }

    private async Task ProgressAsync(RelayCall call, IRelayBilling billing, BilledUsage seen)
    {
        using var timer = LavaMetrics.GatewayAfter();
        try
        {
            await billing.ProgressAsync(seen);
        }
        catch (Exception e)
        {
            // A missed progress note only makes a crash bill less of this call; the stream goes on.
            log.LogWarning("Gateway call {CallId}: its progress could not be recorded ({Failure})", call.CallId, e.GetType().Name);
        }
    }

    private async Task ReleaseAsync(RelayCall call, IRelayBilling billing)
    {
        try
        {
            await billing.ReleaseAsync();
        }
        catch (Exception e)
        {
            // Only when the release could not even be kept for the settle worker: the call stays open, and after its
            // lease the crash rule bills its prompt estimate (docs/gateway.md).
            log.LogError("Gateway call {CallId} of merchant {MerchantId}: its hold could not be released ({Failure})",
                call.CallId, call.MerchantId, e.GetType().Name);
        }
    }
}
