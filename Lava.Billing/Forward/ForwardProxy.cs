using System.Text.Json;
using FluentValidation;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Requests;
using Lava.Billing.Translation;
using Microsoft.Extensions.Primitives;

namespace Lava.Billing.Forward;

/// <summary>
/// One gateway call: check everything that can be checked before the provider is paid (mode, upstream, metadata,
/// billing), then hand it to <see cref="ForwardRelay"/>, which forwards the buffered request, streams the answer back
/// as it arrives while reading its usage, and bills it through the call's record.
/// </summary>
public sealed class ForwardProxy(ForwardOptions options, ForwardRelay relay, IForwardBilling billing, ForwardPostingQueue posting,
    ForwardLookups lookups, IValidator<CreateRequestBody> reportValidator, MerchantLimits limits)
{
    /// <summary>
    /// How often a call is admitted before it gives up: a second time only when a price it was admitted with from memory
    /// had moved (then it reads the database), a third when one moved again in those milliseconds.
    /// </summary>
    private const int MaxAdmissions = 3;

    public const string RequestIdHeader = "x-lava-request-id";
    public const string MetadataHeader = "x-lava-metadata";
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
        var requestId = Ids.New("req");
        http.Response.Headers[RequestIdHeader] = requestId;
        var prompt = new NormalizedUsage(inspected.InputTokensEstimate, 0, 0, 0, inspected.InputCharacters);
        ModelPrice? price;
        ForwardCall call;
        // Its merchant's turn (MerchantLimits) while it is admitted, when the hold may wait for the customer's balance rows
        // on a connection of the service's pool; not while its body arrived, nor while the provider answers.
        using var turn = await limits.EnterAsync(caller.MerchantId, MerchantLimits.Kind.Requests, ct);
        if (turn is null) return MerchantLimits.Refused(MerchantLimits.Kind.Requests);
        for (var attempt = 1; ; attempt++)
        {
            price = inspected.Model is null ? null : await lookups.PriceAsync(caller.MerchantId, inspected.Model, ct);
            call = new ForwardCall(caller, token, mode, requestId, target!, format, inspected.Model, price, metadata);
            // Billed if the process dies before anything better is known (docs/gateway.md, the crash rule).
            var admission = await billing.BeforeAsync(call, new UsageEstimate(prompt, inspected.MaxOutputTokens),
                ForwardRelay.Initial(format, price, inspected), ct);
            if (admission.Refusal is { } refusal) return refusal;
            if (!admission.Retry)
            {
                call = call with { HoldId = admission.HoldId };
                break;
            }
            if (attempt == MaxAdmissions)
                return Problems.Unavailable("The prices this call is costed with changed while it was admitted; nothing was held. Try again.");
        }
        turn.Dispose();
        var providerKey = token.ProviderKey ?? options.ManagedKeyFor(target!.IdnHost);
        var keyStyle = ProviderKeyStyles.For(target!, format);
        var request = http.Request;
        var relayed = new RelayCall(requestId, caller.MerchantId, requestId, target!, format, price, inspected, translation,
            () => BuildRequest(request, target!, inspected, translation, providerKey, keyStyle), startedAt);
        // From here the call has a record (and maybe a hold): the relay bills it or releases it on every way out.
        return await relay.RunAsync(http, relayed, new GatewayCallBilling(billing, posting, call));
    }

    /// <summary>A gateway call's usage: written to its record (with its hold), then posted off the client's path.</summary>
    private sealed class GatewayCallBilling(IForwardBilling billing, ForwardPostingQueue posting, ForwardCall call) : IRelayBilling
    {
        private ForwardCallRecord? _served;

        public Task ProgressAsync(BilledUsage seen) => billing.ProgressAsync(call, seen, CancellationToken.None);

        public async Task ServeAsync(BilledUsage usage, string? anomaly) =>
            _served = await billing.ServeAsync(call, usage, anomaly, CancellationToken.None);

        public Task ReleaseAsync() => billing.ReleaseAsync(call, CancellationToken.None);

        // Null when it could not be written now, or the settle worker got there first: then it is not this call's to post.
        public async Task PostServedAsync()
        {
            if (_served is not null) await posting.PostAsync(_served);
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
