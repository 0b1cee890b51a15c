using System.Buffers;
using System.Text.Json;
using FluentValidation;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Infrastructure.Observability;
using Lava.Billing.Requests;
using Lava.Billing.Translation;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Primitives;
using Polly.CircuitBreaker;
using Polly.Timeout;

namespace Lava.Billing.Forward;

/// <summary>
/// One gateway call: check everything that can be checked before the provider is paid (mode, upstream, metadata,
/// billing), forward the buffered request, stream the answer back as it arrives while reading its usage, then bill.
/// </summary>
public sealed class ForwardProxy(ForwardOptions options, UpstreamClient upstream, IForwardBilling billing, ForwardPostingQueue posting,
    ModelPriceStore prices, IValidator<CreateRequestBody> reportValidator, TimeProvider clock, ILogger<ForwardProxy> log)
{
    public const string RequestIdHeader = "x-lava-request-id";
    public const string MetadataHeader = "x-lava-metadata";
    private const int CopyBufferBytes = 16 * 1024;
    private const int MaxMetadataHeaderChars = 64 * 1024;

    public Task<IResult> ForwardAsync(HttpContext http, Caller caller) => RunAsync(http, caller, rewriteFormat: null);

    /// <summary>
    /// <c>/v1/rewrite/{format}/{provider URL}</c>: a forwarded call whose client speaks <paramref name="format"/> and
    /// whose provider speaks what its URL says; the request and the answer are translated between the two, the usage
    /// read from the provider's own answer before translation (docs/gateway.md, "Format translation").
    /// </summary>
    public Task<IResult> RewriteAsync(HttpContext http, Caller caller, string format) => RunAsync(http, caller, format);

    private async Task<IResult> RunAsync(HttpContext http, Caller caller, string? rewriteFormat)
    {
        var ct = http.RequestAborted;
        var startedAt = System.Diagnostics.Stopwatch.GetTimestamp();
        if (ForwardToken.From(http) is not { } token) return Problems.Unauthorized();
        // A GET through the gateway still spends money, so the read-only rule is about the call, not the method.
        if (!caller.CanWrite) return Problems.ReadOnlyKey();
        if (ForwardModes.Of(token, out var tokenError) is not { } mode) return Problems.BadRequest("invalid_forward_token", tokenError!);
        // It becomes a header value: a CR or LF would end the header (or the request) early, so it is refused before
        // anything is held or sent.
        if (token.ProviderKey is { } key && !ForwardHeaders.IsValidValue(key, ForwardHeaders.MaxProviderKeyChars))
        {
            return Problems.BadRequest("invalid_provider_key",
                $"provider_key must be 1 to {ForwardHeaders.MaxProviderKeyChars} visible ASCII characters (no spaces, tabs, CR or LF).");
        }
        var rawTarget = rewriteFormat is null ? http.Request.QueryString.Value : "u=" + RewriteTranslation.ProviderUrl(http, rewriteFormat);
        if (!ForwardTarget.TryParse(rawTarget, out var target, out var targetError))
            return Problems.UpstreamNotAllowed(targetError!);
        if (!options.IsAllowed(target!))
            return Problems.UpstreamNotAllowed($"'{target!.GetLeftPart(UriPartial.Path)}' is not an allowed upstream (Forward:AllowedUpstreams).");
        ChatTranslation? translation = null;
        if (rewriteFormat is not null && !RewriteTranslation.TryChoose(rewriteFormat, target!, out translation, out var formatProblem)) return formatProblem!;
        if (!TryReadMetadata(http.Request.Headers[MetadataHeader], out var metadata, out var metadataProblem)) return metadataProblem!;

        var body = await ReadBodyAsync(http.Request, ct);
        var contentType = http.Request.ContentType;
        if (translation is not null)
        {
            // Refused here, before anything is held: a request that cannot be carried over costs nothing.
            if (!RewriteTranslation.TryRequest(translation, body, RequestSettings.For(target!, options.DefaultMaxOutputTokens), out body, out var problem))
                return problem!;
            contentType = "application/json";
        }
        var format = ApiFormats.Detect(target!);
        var inspected = RequestInspector.Inspect(format, target!, contentType, body);
        var price = inspected.Model is null ? null : await prices.FindCurrentAsync(caller.MerchantId, inspected.Model, ct);
        var requestId = Ids.New("req");
        http.Response.Headers[RequestIdHeader] = requestId;
        var call = new ForwardCall(caller, token, mode, requestId, target!, format, inspected.Model, price, metadata);
        var prompt = new NormalizedUsage(inspected.InputTokensEstimate, 0, 0, 0, inspected.InputCharacters);
        // Billed if the process dies before anything better is known (docs/gateway.md, the crash rule).
        var initial = Bill(call, Initial(call, inspected), estimated: true);
        var admission = await billing.BeforeAsync(call, new UsageEstimate(prompt, inspected.MaxOutputTokens), initial, ct);
        if (admission.Refusal is { } refusal) return refusal;
        call = call with { HoldId = admission.HoldId };

        // From here the call has a record (and maybe a hold): every way out bills it or releases it.
        var progress = new CallProgress { StartedAt = startedAt };
        try
        {
            // A client that left while the record was written never reaches the provider: the finally releases the call.
            ct.ThrowIfCancellationRequested();
            return await CallAsync(http, call, inspected, translation, progress, ct);
        }
        finally
        {
            if (!progress.Settled) await SettleUnforeseenAsync(call, inspected, progress);
        }
    }

    // Something unforeseen broke the call: bill what the client received, or release what nobody received. Never
    // throws, so the exception that got here is the one the error handler sees.
    private async Task SettleUnforeseenAsync(ForwardCall call, InspectedRequest inspected, CallProgress progress)
    {
        try
        {
            if (progress.Relayed) await ServeAndSettleAsync(call, Bounded(call, inspected, progress.Usage, cut: true));
            else await ReleaseAsync(call);
        }
        catch (Exception e)
        {
            log.LogError("Gateway request {RequestId} of merchant {MerchantId} failed and could not be settled ({Failure}); the settle worker bills it by the crash rule",
                call.RequestId, call.Caller.MerchantId, e.GetType().Name);
        }
    }

    /// <summary>How far a call got, so the way out knows whether to bill or release.</summary>
    private sealed class CallProgress
    {
        /// <summary>Billed or released: nothing left to do.</summary>
        public bool Settled;
        /// <summary>Some of the provider's answer went to the client.</summary>
        public bool Relayed;
        public UsageReader? Usage;
        /// <summary>When the gateway took the call (a Stopwatch timestamp), for the time it adds before the provider.</summary>
        public long StartedAt;
    }

    private async Task<IResult> CallAsync(HttpContext http, ForwardCall call, InspectedRequest inspected, ChatTranslation? translation,
        CallProgress progress, CancellationToken ct)
    {
        var target = call.Upstream;
        var providerKey = call.Token.ProviderKey ?? options.ManagedKeyFor(target.IdnHost);
        var keyStyle = ProviderKeyStyles.For(target, call.Format);
        HttpResponseMessage response;
        LavaMetrics.GatewayBefore(progress.StartedAt);
        try
        {
            response = await upstream.SendAsync(target, () => BuildRequest(http.Request, target, inspected, translation, providerKey, keyStyle), ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client left before the provider answered. The provider may already be working: bill the prompt, flagged.
            progress.Settled = true;
            await ServeAndSettleAsync(call, (Bill(call, Initial(call, inspected), estimated: true), null));
            return Results.Empty;
        }
        catch (Exception e) when (e is TimeoutRejectedException or BrokenCircuitException or HttpRequestException)
        {
            LavaMetrics.GatewayFailed(target!.IdnHost, e);
            log.LogWarning("Gateway request {RequestId}: upstream {Upstream} failed: {Failure}",
                call.RequestId, target.GetLeftPart(UriPartial.Authority), e.GetType().Name);
            progress.Settled = true;
            await ReleaseAsync(call);
            return e switch
            {
                TimeoutRejectedException => Problems.UpstreamTimeout("The provider did not answer in time; nothing was charged."),
                BrokenCircuitException => Problems.UpstreamUnavailable(
                    "The provider is failing; calls to it are paused for a moment. Nothing was charged."),
                _ => Problems.UpstreamUnavailable("The provider could not be reached; nothing was charged."),
            };
        }
        using (response)
            await RelayAsync(http, response, call, inspected, translation, progress, ct);
        return Results.Empty;
    }

    /// <summary>
    /// Streams the answer to the client while reading its usage. The usage is made durable before the client has the
    /// end of the answer: in an event stream, as soon as the provider's final count passes by (before that event is
    /// relayed); in any other body, by holding its last chunk back until the usage is written. While a stream runs,
    /// the usage seen so far is recorded every <see cref="ForwardOptions.ProgressInterval"/>, which is what a crash
    /// bills.
    /// </summary>
    private async Task RelayAsync(HttpContext http, HttpResponseMessage response, ForwardCall call, InspectedRequest inspected,
        ChatTranslation? translation, CallProgress progress, CancellationToken ct)
    {
        http.Response.StatusCode = (int)response.StatusCode;
        LavaMetrics.GatewayCalled(call.Upstream.IdnHost, (int)response.StatusCode);
        ForwardHeaders.CopyResponse(response, http.Response);
        http.Response.Headers[RequestIdHeader] = call.RequestId;
        http.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        var succeeded = response.IsSuccessStatusCode;
        var eventStream = string.Equals(response.Content.Headers.ContentType?.MediaType, "text/event-stream", StringComparison.OrdinalIgnoreCase);
        // The usage is read from the provider's bytes; only what goes to the client is translated.
        var answer = translation?.Answer((int)response.StatusCode, eventStream, clock.GetUtcNow());
        if (answer is not null)
        {
            http.Response.ContentLength = null;
            http.Response.ContentType = answer.ContentType;
        }
        var usage = new UsageReader(call.Format, eventStream);
        progress.Usage = succeeded ? usage : null;
        var stallLimit = options.TimeoutFor(call.Upstream.IdnHost);
        var cut = false;
        ForwardCallRecord? served = null;
        var isServed = false;
        var lastProgress = clock.GetTimestamp();
        var buffer = ArrayPool<byte>.Shared.Rent(CopyBufferBytes);
        // A translated body is held whole by its translator instead, and written once its usage is.
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
                    if (succeeded)
                    {
                        usage.Feed(buffer.AsSpan(0, read));
                        if (eventStream && !isServed && usage.Complete)
                        {
                            // The provider's final count: on disk before the client sees the end of the answer.
                            var (final, anomaly) = Bounded(call, inspected, usage, cut: false);
                            served = await billing.ServeAsync(call, final, anomaly, CancellationToken.None);
                            isServed = true;
                            // Whatever breaks from here, this usage is what the call is billed (by the worker at worst).
                            progress.Settled = true;
                        }
                        else if (eventStream && !isServed && clock.GetElapsedTime(lastProgress) >= options.ProgressInterval)
                        {
                            await ProgressAsync(call, Bounded(call, inspected, usage, cut: true).Usage);
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
                    progress.Relayed = true;
                }
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or HttpRequestException)
            {
                // The client left, or the provider stalled or broke off. Either way the upstream call ends here (the
                // response is disposed), and the client must not take a cut body for a whole one.
                cut = true;
                http.Abort();
            }

            if (!succeeded)
            {
                progress.Settled = true;
                await ReleaseAsync(call);
                if (answer is not null && !cut) await WriteLastAsync(http, answer.Finish(), ct);
                return;
            }
            if (!isServed)
            {
                if (!cut) usage.Finish();
                var (billed, anomaly) = Bounded(call, inspected, usage, cut);
                served = await billing.ServeAsync(call, billed, anomaly, CancellationToken.None);
            }
            progress.Settled = true;
            if (held is not null && heldLength > 0 && !cut) await WriteLastAsync(http, held.AsMemory(0, heldLength), ct);
            if (answer is not null && !cut) await WriteLastAsync(http, answer.Finish(), ct);
            // Its usage is on disk: posting it need not keep the client waiting for the end of the response.
            if (served is not null) await posting.PostAsync(served);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            if (held is not null) ArrayPool<byte>.Shared.Return(held);
        }
    }

    internal static async Task WriteLastAsync(HttpContext http, ReadOnlyMemory<byte> last, CancellationToken ct)
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
    internal static (BilledUsage Usage, string? Anomaly) Bounded(ForwardCall call, InspectedRequest inspected, UsageReader? usage, bool cut)
    {
        var billed = call.Format switch
        {
            // Speech is billed by the characters it was asked to speak, known before the call.
            ApiFormat.Speech => Bill(call, NormalizedUsage.None with { InputCharacters = inspected.InputCharacters }, estimated: false),
            _ when usage is { Complete: true, Usage: { } exact } => Bill(call, exact, estimated: false),
            _ when !ApiFormats.ReportsUsage(call.Format) => Bill(call, NormalizedUsage.None, estimated: false),
            _ => Bill(call, Estimate(usage?.Usage, inspected, usage?.OutputCharacters ?? 0), estimated: true),
        };
        if (UsageBounds.Within(billed.Usage, billed.ProviderCost)) return (billed, null);
        var fallback = Bill(call, Estimate(null, inspected, usage?.OutputCharacters ?? 0), estimated: true);
        return UsageBounds.Within(fallback.Usage, fallback.ProviderCost)
            ? (fallback, UsageBounds.OutOfRange)
            : (Bill(call, NormalizedUsage.None, estimated: true), UsageBounds.OutOfRange);
    }

    /// <summary>What a call is billed before its answer is seen: the prompt, as far as the request shows it.</summary>
    private static NormalizedUsage Initial(ForwardCall call, InspectedRequest inspected) => call.Format switch
    {
        ApiFormat.Speech => NormalizedUsage.None with { InputCharacters = inspected.InputCharacters },
        _ when !ApiFormats.ReportsUsage(call.Format) => NormalizedUsage.None,
        _ => Estimate(null, inspected, 0),
    };

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

    private static BilledUsage Bill(ForwardCall call, NormalizedUsage usage, bool estimated) =>
        new(usage, call.Price is { } price ? ProviderCost.Compute(usage, price) : null, estimated);

    // The answer is already on its way (or the client gone): billing never fails the call; what cannot be written
    // now is left to the settle worker (ForwardBilling says how).
    private async Task ServeAndSettleAsync(ForwardCall call, (BilledUsage Usage, string? Anomaly) billed)
    {
        if (await billing.ServeAsync(call, billed.Usage, billed.Anomaly, CancellationToken.None) is { } served)
            await posting.PostAsync(served);
    }

    private async Task ProgressAsync(ForwardCall call, BilledUsage seen)
    {
        using var timer = LavaMetrics.GatewayAfter();
        try
        {
            await billing.ProgressAsync(call, seen, CancellationToken.None);
        }
        catch (Exception e)
        {
            // A missed progress note only makes a crash bill less of this call; the stream goes on.
            log.LogWarning("Gateway request {RequestId}: its progress could not be recorded ({Failure})", call.RequestId, e.GetType().Name);
        }
    }

    private async Task ReleaseAsync(ForwardCall call)
    {
        try
        {
            await billing.ReleaseAsync(call, CancellationToken.None);
        }
        catch (Exception e)
        {
            // Only when even the settle worker's queue is full: the record stays pending, and after its lease the crash rule
            // bills its prompt estimate (docs/gateway.md).
            log.LogError("Gateway request {RequestId} of merchant {MerchantId}: its hold could not be released ({Failure})",
                call.RequestId, call.Caller.MerchantId, e.GetType().Name);
        }
    }

    private static HttpRequestMessage BuildRequest(HttpRequest incoming, Uri target, InspectedRequest inspected, ChatTranslation? translation,
        string? providerKey, ProviderKeyStyle style)
    {
        var message = new HttpRequestMessage(new HttpMethod(incoming.Method), target);
        if (inspected.Body.Length > 0 || !HttpMethods.IsGet(incoming.Method)) message.Content = new ByteArrayContent(inspected.Body);
        ForwardHeaders.CopyRequest(incoming.Headers, message);
        ForwardHeaders.SetProviderKey(message, providerKey, style);
        if (translation is not null)
        {
            message.Content!.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            translation.AdjustHeaders(message);
        }
        return message;
    }

    /// <summary>The whole request body, so a retry can send it again; the body limit (1 MiB) bounds it.</summary>
    private static async Task<byte[]> ReadBodyAsync(HttpRequest request, CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        await request.Body.CopyToAsync(buffer, ct);
        return buffer.ToArray();
    }

    /// <summary><c>x-lava-metadata</c>: one JSON object of strings, held to the rules of a report's metadata.</summary>
    private bool TryReadMetadata(StringValues header, out Dictionary<string, string> metadata, out ProblemResult? problem)
    {
        metadata = [];
        problem = null;
        if (header.Count == 0) return true;
        Dictionary<string, string>? parsed = null;
        if (header is [{ Length: <= MaxMetadataHeaderChars } json])
        {
            try
            {
                parsed = JsonSerializer.Deserialize<Dictionary<string, string>>(json);
            }
            catch (JsonException)
            {
                parsed = null;
            }
        }
        if (parsed is null)
        {
            problem = Problems.Validation(new Dictionary<string, string[]> { ["metadata"] = [$"{MetadataHeader} must be one JSON object of string values"] });
            return false;
        }
        // The report validator itself judges it, so gateway and report metadata cannot drift apart.
        var errors = reportValidator.Validate(new CreateRequestBody { RequestId = "metadata", MeterSlug = "metadata", Metadata = parsed })
            .Errors.Where(e => e.PropertyName == "metadata").Select(e => e.ErrorMessage).ToArray();
        if (errors.Length > 0)
        {
            problem = Problems.Validation(new Dictionary<string, string[]> { ["metadata"] = errors });
            return false;
        }
        metadata = parsed;
        return true;
    }
}
