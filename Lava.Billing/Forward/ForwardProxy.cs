using System.Buffers;
using System.Text.Json;
using FluentValidation;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Infrastructure.Observability;
using Lava.Billing.Requests;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Primitives;
using Polly.CircuitBreaker;
using Polly.Timeout;

namespace Lava.Billing.Forward;

/// <summary>
/// One gateway call: check everything that can be checked before the provider is paid (mode, upstream, metadata,
/// billing), forward the buffered request, stream the answer back as it arrives while reading its usage, then bill.
/// </summary>
public sealed class ForwardProxy(ForwardOptions options, UpstreamClient upstream, IForwardBilling billing, ModelPriceStore prices,
    IValidator<CreateRequestBody> reportValidator, ILogger<ForwardProxy> log)
{
    public const string RequestIdHeader = "x-lava-request-id";
    public const string MetadataHeader = "x-lava-metadata";
    private const int CopyBufferBytes = 16 * 1024;
    private const int MaxMetadataHeaderChars = 64 * 1024;

    public async Task<IResult> ForwardAsync(HttpContext http, Caller caller)
    {
        var ct = http.RequestAborted;
        var startedAt = System.Diagnostics.Stopwatch.GetTimestamp();
        if (ForwardToken.From(http) is not { } token) return Problems.Unauthorized();
        // A GET through the gateway still spends money, so the read-only rule is about the call, not the method.
        if (!caller.CanWrite) return Problems.ReadOnlyKey();
        if (ForwardModes.Of(token, out var tokenError) is not { } mode) return Problems.BadRequest("invalid_forward_token", tokenError!);
        if (!ForwardTarget.TryParse(http.Request.QueryString.Value, out var target, out var targetError))
            return Problems.UpstreamNotAllowed(targetError!);
        if (!options.IsAllowed(target!))
            return Problems.UpstreamNotAllowed($"'{target!.GetLeftPart(UriPartial.Path)}' is not an allowed upstream (Forward:AllowedUpstreams).");
        if (!TryReadMetadata(http.Request.Headers[MetadataHeader], out var metadata, out var metadataProblem)) return metadataProblem!;

        var body = await ReadBodyAsync(http.Request, ct);
        var format = ApiFormats.Detect(target!);
        var inspected = RequestInspector.Inspect(format, target!, http.Request.ContentType, body);
        var price = inspected.Model is null ? null : await prices.FindCurrentAsync(caller.MerchantId, inspected.Model, ct);
        var requestId = Ids.New("req");
        http.Response.Headers[RequestIdHeader] = requestId;
        var call = new ForwardCall(caller, token, mode, requestId, target!, format, inspected.Model, price, metadata);
        var prompt = new NormalizedUsage(inspected.InputTokensEstimate, 0, 0, 0, inspected.InputCharacters);
        var admission = await billing.BeforeAsync(call, new UsageEstimate(prompt, inspected.MaxOutputTokens), ct);
        if (admission.Refusal is { } refusal) return refusal;
        call = call with { HoldId = admission.HoldId };

        var providerKey = token.ProviderKey ?? options.ManagedKeyFor(target!.IdnHost);
        var keyStyle = ProviderKeyStyles.For(target!, format);
        HttpResponseMessage response;
        LavaMetrics.GatewayBefore(startedAt);
        try
        {
            response = await upstream.SendAsync(target!, () => BuildRequest(http.Request, target!, inspected, providerKey, keyStyle), ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client left before the provider answered. The provider may already be working: bill the prompt, flagged.
            await AfterAsync(call, Bill(call, Estimate(null, inspected, 0), estimated: true));
            return Results.Empty;
        }
        catch (Exception e) when (e is TimeoutRejectedException or BrokenCircuitException or HttpRequestException)
        {
            LavaMetrics.GatewayFailed(target!.IdnHost, e);
            log.LogWarning("Gateway request {RequestId}: upstream {Upstream} failed: {Failure}",
                requestId, target!.GetLeftPart(UriPartial.Authority), e.GetType().Name);
            await AfterAsync(call, null);
            return e switch
            {
                TimeoutRejectedException => Problems.UpstreamTimeout("The provider did not answer in time; nothing was charged."),
                BrokenCircuitException => Problems.UpstreamUnavailable(
                    "The provider is failing; calls to it are paused for a moment. Nothing was charged."),
                _ => Problems.UpstreamUnavailable("The provider could not be reached; nothing was charged."),
            };
        }
        using (response)
            await RelayAsync(http, response, call, inspected, ct);
        return Results.Empty;
    }

    private async Task RelayAsync(HttpContext http, HttpResponseMessage response, ForwardCall call, InspectedRequest inspected, CancellationToken ct)
    {
        http.Response.StatusCode = (int)response.StatusCode;
        LavaMetrics.GatewayCalled(call.Upstream.IdnHost, (int)response.StatusCode);
        ForwardHeaders.CopyResponse(response, http.Response);
        http.Response.Headers[RequestIdHeader] = call.RequestId;
        http.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        var succeeded = response.IsSuccessStatusCode;
        var eventStream = string.Equals(response.Content.Headers.ContentType?.MediaType, "text/event-stream", StringComparison.OrdinalIgnoreCase);
        var usage = new UsageReader(call.Format, eventStream);
        var stallLimit = options.TimeoutFor(call.Upstream.IdnHost);
        var cut = false;
        var buffer = ArrayPool<byte>.Shared.Rent(CopyBufferBytes);
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
                if (succeeded) usage.Feed(buffer.AsSpan(0, read));
                await http.Response.Body.WriteAsync(buffer.AsMemory(0, read), ct);
                await http.Response.Body.FlushAsync(ct);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or HttpRequestException)
        {
            // The client left, or the provider stalled or broke off. Either way the upstream call ends here (the
            // response is disposed), and the client must not take a cut body for a whole one.
            cut = true;
            http.Abort();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        if (!succeeded)
        {
            await AfterAsync(call, null);
            return;
        }
        if (!cut) usage.Finish();
        var billed = call.Format switch
        {
            // Speech is billed by the characters it was asked to speak, known before the call.
            ApiFormat.Speech => Bill(call, NormalizedUsage.None with { InputCharacters = inspected.InputCharacters }, estimated: false),
            _ when usage is { Complete: true, Usage: { } exact } => Bill(call, exact, estimated: false),
            _ when !ApiFormats.ReportsUsage(call.Format) => Bill(call, NormalizedUsage.None, estimated: false),
            _ => Bill(call, Estimate(usage.Usage, inspected, usage.OutputCharacters), estimated: true),
        };
        await AfterAsync(call, billed);
    }

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

    // The response is already on its way (or the client gone): a failure here can only be logged, loudly.
    private async Task AfterAsync(ForwardCall call, BilledUsage? usage)
    {
        using var timer = LavaMetrics.GatewayAfter();
        try
        {
            await billing.AfterAsync(call, usage, CancellationToken.None);
        }
        catch (Exception e)
        {
            log.LogError(e, "Gateway request {RequestId} of merchant {MerchantId}: its usage could not be recorded",
                call.RequestId, call.Caller.MerchantId);
        }
    }

    private static HttpRequestMessage BuildRequest(HttpRequest incoming, Uri target, InspectedRequest inspected, string? providerKey, ProviderKeyStyle style)
    {
        var message = new HttpRequestMessage(new HttpMethod(incoming.Method), target);
        if (inspected.Body.Length > 0 || !HttpMethods.IsGet(incoming.Method)) message.Content = new ByteArrayContent(inspected.Body);
        ForwardHeaders.CopyRequest(incoming.Headers, message);
        ForwardHeaders.SetProviderKey(message, providerKey, style);
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
