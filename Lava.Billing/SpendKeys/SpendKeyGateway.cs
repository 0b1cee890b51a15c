using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lava.Billing.Forward;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Translation;
using Lava.Billing.Merchants;
using Microsoft.AspNetCore.Http.Features;

namespace Lava.Billing.SpendKeys;

/// <summary>
/// A spend key used as a provider key: <c>POST /v1/chat/completions</c> (OpenAI shape) and <c>POST /v1/messages</c>
/// (Anthropic shape), authenticated by <c>Authorization: Bearer lava_sk_…</c> or <c>x-api-key: lava_sk_…</c>. The key's
/// limits are taken (<see cref="SpendKeyLimits"/>) before any connection to the provider; the provider is called with
/// the merchant's managed key; the hold is captured at the provider's cost for the usage it reports, or released.
/// </summary>
public static class SpendKeyGateway
{
    public static IServiceCollection AddSpendKeyGateway(this IServiceCollection services) =>
        services.AddSingleton(sp => SpendKeyRoutes.From(sp.GetRequiredService<IConfiguration>()));

    /// <summary>Runs ahead of secret-key authentication, and only for a spend key on one of its routes.</summary>
    public static IApplicationBuilder UseSpendKeyGateway(this IApplicationBuilder app) =>
        app.UseWhen(c => Credential(c.Request) is not null && (ShapeOf(c.Request) is not null || IsModels(c.Request)), branch =>
        {
            // Ahead of secret-key auth, so the edge's input checks (docs/input.md) run here too.
            branch.UseLavaInputGuard();
            branch.Run(HandleAsync);
        });

    private static bool IsModels(HttpRequest request) => HttpMethods.IsGet(request.Method) && request.Path.Equals("/v1/models");

    private static string? Credential(HttpRequest request)
    {
        var key = Auth.BearerToken(request.Headers.Authorization.ToString()) ?? request.Headers["x-api-key"].ToString();
        return SpendKeySecrets.LooksLikeOne(key) ? key : null;
    }

    private static string? ShapeOf(HttpRequest request) =>
        !HttpMethods.IsPost(request.Method) ? null
        : request.Path.Equals("/v1/chat/completions") ? RequestShapes.OpenAi
        : request.Path.Equals("/v1/messages") ? RequestShapes.Anthropic
        : null;

    private static async Task HandleAsync(HttpContext http)
    {
        var result = IsModels(http.Request) ? await ModelsAsync(http) : await ServeAsync(http);
        if (result is not null) await result.ExecuteAsync(http);
    }

    /// <summary>
    /// The OpenAI-style model list, cut to what this key may call: priced models with a provider in the model table
    /// (of either shape: the other is translated) which both allow-lists admit.
    /// </summary>
    private static async Task<IResult> ModelsAsync(HttpContext http)
    {
        var services = http.RequestServices;
        var routes = services.GetRequiredService<SpendKeyRoutes>();
        if (await services.GetRequiredService<SpendKeyStore>().FindLiveAsync(Credential(http.Request)!, http.RequestAborted) is not { } k)
            return Problems.Unauthorized("A live spend key is required: Authorization: Bearer lava_sk_… or x-api-key.");
        var prices = await services.GetRequiredService<ModelPriceStore>().ListCurrentAsync(k.MerchantId, null, MaxModels, http.RequestAborted);
        var allowed = prices.Where(p => routes.For(p.Model) is { } r &&
                                        (k.AllowedModels is null || k.AllowedModels.Contains(p.Model, StringComparer.Ordinal)) &&
                                        (k.AllowedProviders is null || k.AllowedProviders.Contains(r.Provider, StringComparer.Ordinal)));
        return TypedResults.Ok(new RestModelList("list",
            allowed.Select(p => new RestModel(p.Model, "model", p.CreatedAt.ToUnixTimeSeconds(), p.OwnedBy)).ToList()));
    }

    private const int MaxModels = 1000;

    /// <summary>A problem to answer, or null when the provider's response was already streamed to the caller.</summary>
    private static async Task<IResult?> ServeAsync(HttpContext http)
    {
        var services = http.RequestServices;
        var routes = services.GetRequiredService<SpendKeyRoutes>();
        var forward = services.GetRequiredService<ForwardOptions>();
        var keys = services.GetRequiredService<SpendKeyStore>();
        var limits = services.GetRequiredService<SpendKeyLimits>();
        var ct = http.RequestAborted;
        var key = Credential(http.Request)!;
        var shape = ShapeOf(http.Request)!;

        var owner = await keys.FindLiveAsync(key, ct);
        if (owner is not { } o) return Problems.Unauthorized("A live spend key is required: Authorization: Bearer lava_sk_… or x-api-key.");
        if (o.RequestShape != shape)
            return Problems.BadRequest("wrong_request_shape", $"This spend key speaks the '{o.RequestShape}' request shape; this route takes '{shape}'.");
        // The ends of this merchant's calls that the database could not take fill its share of memory: new calls wait
        // until the settle worker has written some, rather than pile up more, while other merchants go on.
        if (!limits.HasRoomFor(o.MerchantId))
        {
            http.Response.Headers.RetryAfter = Math.Max(1, (long)Math.Ceiling(forward.SettleInterval.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
            return Problems.Unavailable("This merchant's finished spend-key calls are waiting for the database to record them; retry later. Nothing was charged.");
        }

        JsonObject body;
        try
        {
            body = await JsonNode.ParseAsync(http.Request.Body, cancellationToken: ct) as JsonObject
                ?? throw new JsonException("not an object");
        }
        catch (JsonException)
        {
            return Problems.MalformedJson("The request body must be a JSON object.");
        }
        var model = body["model"] is JsonValue m && m.TryGetValue<string>(out var name) ? name : null;
        if (string.IsNullOrEmpty(model)) return Problems.Validation(new Dictionary<string, string[]> { ["model"] = ["is required"] });
        var route = routes.For(model);
        if (route is null) return Problems.BadRequest("unknown_model", $"No provider serves '{model}' here.");
        var upstream = new Uri(route.BaseUrl + (route.Shape == RequestShapes.OpenAi ? "/chat/completions" : "/messages"));
        if (!forward.IsAllowed(upstream)) return Problems.UpstreamNotAllowed($"The provider for '{model}' is not on the gateway's allow-list.");
        var managedKey = forward.ManagedKeyFor(upstream.Host);
        if (managedKey is null) return Problems.Unavailable($"No managed provider key is configured for {upstream.Host}.");
        var price = await services.GetRequiredService<ModelPriceStore>().FindCurrentAsync(o.MerchantId, model, ct);
        if (price is null) return Problems.Unprocessable("model_not_priced", $"'{model}' has no price, so its worst case cannot be held.");
        // A model whose provider speaks the other shape: from here on the request is the provider's (docs/spend-keys.md).
        var translation = ChatTranslation.Between(ChatShapes.FromClientFormat(shape)!.Value, ChatShapes.FromClientFormat(route.Shape)!.Value);
        if (translation is not null)
        {
            try
            {
                body = translation.Request(body, RequestSettings.For(upstream, routes.DefaultMaxOutputTokens));
            }
            catch (UntranslatableException e)
            {
                return Problems.BadRequest("untranslatable_request", e.Message);
            }
            shape = route.Shape;
        }

        // The output cap is what bounds the worst case, so a request without one is sent with the default cap.
        var capField = shape == RequestShapes.OpenAi && body["max_completion_tokens"] is not null ? "max_completion_tokens" : "max_tokens";
        var maxOutput = body[capField] is JsonValue cap && cap.TryGetValue<long>(out var n) && n > 0 ? n : routes.DefaultMaxOutputTokens;
        body[capField] = maxOutput;
        var format = shape == RequestShapes.Anthropic ? ApiFormat.AnthropicMessages : ApiFormat.OpenAiChat;
        // The inspector asks a streamed OpenAI chat for its usage (stream_options.include_usage), which it otherwise never reports.
        var inspected = RequestInspector.Inspect(format, upstream, "application/json", JsonSerializer.SerializeToUtf8Bytes(body));
        var payload = inspected.Body;
        // A token is at least one byte, so the body's length bounds the input tokens, priced at the dearer input rate.
        var worstCase = Math.Max(ProviderCost.Compute(new NormalizedUsage(payload.Length, 0, 0, maxOutput), price),
                                 ProviderCost.Compute(new NormalizedUsage(0, 0, payload.Length, maxOutput), price));
        var estimate = ProviderCost.Compute(ForwardProxy.Estimate(null, inspected, 0), price);

        var (grant, refusal, retryAfter) = await limits.ReserveAsync(key,
            new SpendKeyCall(model, route.Provider, worstCase, estimate, forward.PendingLease(upstream.Host)), ct);
        if (grant is null) return Refused(http, refusal!.Value, retryAfter);
        return await CallAsync(http, grant, upstream, managedKey, shape, translation, inspected, price, limits);
    }

    private static async Task<IResult?> CallAsync(HttpContext http, SpendKeyGrant grant, Uri upstream, string managedKey, string shape,
        ChatTranslation? translation, InspectedRequest inspected, ModelPrice price, SpendKeyLimits limits)
    {
        var client = http.RequestServices.GetRequiredService<UpstreamClient>();
        var payload = inspected.Body;
        HttpResponseMessage response;
        try
        {
            response = await client.SendAsync(upstream, () =>
            {
                var request = new HttpRequestMessage(HttpMethod.Post, upstream) { Content = new ByteArrayContent(payload) };
                ForwardHeaders.CopyRequest(http.Request.Headers, request);
                request.Headers.Remove("x-api-key");
                request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
                ForwardHeaders.SetProviderKey(request, managedKey,
                    shape == RequestShapes.Anthropic ? ProviderKeyStyle.AnthropicApiKey : ProviderKeyStyle.Bearer);
                translation?.AdjustHeaders(request);
                return request;
            }, http.RequestAborted);
        }
        catch (Exception e) when (e is HttpRequestException or Polly.Timeout.TimeoutRejectedException or Polly.CircuitBreaker.BrokenCircuitException or TaskCanceledException)
        {
            await limits.EndAsync(grant, null, estimated: false);
            return Problems.UpstreamUnavailable("The provider could not be reached; nothing was charged.");
        }
        using (response)
            await RelayAsync(http, response, grant, upstream, shape == RequestShapes.Anthropic ? ApiFormat.AnthropicMessages : ApiFormat.OpenAiChat,
                translation, inspected, price, limits);
        return null;
    }

    private static readonly Dictionary<string, string> NoMetadata = [];

    /// <summary>
    /// Passes the provider's answer on while reading its usage, by /v1/forward's rules (docs/gateway.md): a read that
    /// waits longer than the provider's timeout cuts the answer; an answer cut (by that, the provider or the client
    /// leaving) is billed the estimate of what was relayed; the charge is captured before the client has the end of the
    /// answer (in an event stream as the provider's final count passes by, else by holding the last chunk back), so a
    /// crash after the client has it never bills less than the provider's count. An error answer is released first.
    /// </summary>
    private static async Task RelayAsync(HttpContext http, HttpResponseMessage response, SpendKeyGrant grant, Uri upstream, ApiFormat format,
        ChatTranslation? translation, InspectedRequest inspected, ModelPrice price, SpendKeyLimits limits)
    {
        var forward = http.RequestServices.GetRequiredService<ForwardOptions>();
        var ct = http.RequestAborted;
        var succeeded = response.IsSuccessStatusCode;
        // Ended: captured or released; nothing of the call is left to write.
        var ended = false;
        if (!succeeded)
        {
            await limits.EndAsync(grant, null, estimated: false);
            ended = true;
        }
        http.Response.StatusCode = (int)response.StatusCode;
        ForwardHeaders.CopyResponse(response, http.Response);
        http.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        var eventStream = string.Equals(response.Content.Headers.ContentType?.MediaType, "text/event-stream", StringComparison.OrdinalIgnoreCase);
        // The usage is read from the provider's own bytes; only what the caller receives is translated.
        var answer = translation?.Answer((int)response.StatusCode, eventStream, DateTimeOffset.UtcNow);
        if (answer is not null)
        {
            http.Response.ContentLength = null;
            http.Response.ContentType = answer.ContentType;
        }
        // The call as /v1/forward's billing sees it: a gateway call at the provider's cost, whose estimate is shared.
        var call = new ForwardCall(new Caller(grant.MerchantId, grant.SpendKeyId, KeyScopes.Full), new ForwardToken("", null, null, null, false),
            ForwardMode.Gateway, grant.ChargeId, upstream, format, price.Model, price, NoMetadata);
        var reader = new UsageReader(format, eventStream);
        var stallLimit = forward.TimeoutFor(upstream.IdnHost);
        var cut = false;
        var lastProgress = Stopwatch.GetTimestamp();
        var buffer = ArrayPool<byte>.Shared.Rent(CopyBufferBytes);
        // A translated body is held whole by its translator instead, and written once the charge is.
        var held = succeeded && !eventStream && answer is null ? ArrayPool<byte>.Shared.Rent(CopyBufferBytes) : null;
        var heldLength = 0;
        try
        {
            try
            {
                await using var stream = await response.Content.ReadAsStreamAsync(ct);
                while (true)
                {
                    int read;
                    using (var stall = CancellationTokenSource.CreateLinkedTokenSource(ct))
                    {
                        stall.CancelAfter(stallLimit);
                        read = await stream.ReadAsync(buffer, stall.Token);
                    }
                    if (read == 0) break;
                    if (!ended)
                    {
                        reader.Feed(buffer.AsSpan(0, read));
                        if (eventStream && reader.Complete)
                        {
                            // The provider's final count: captured before the client sees the end of the answer.
                            await CaptureAsync(limits, grant, ForwardProxy.Bounded(call, inspected, reader, cut: false));
                            ended = true;
                        }
                        else if (eventStream && Stopwatch.GetElapsedTime(lastProgress) >= forward.ProgressInterval)
                        {
                            // The crash rule bills the last note, so a long stream notes what it has shown so far now and then.
                            await NoteProgressAsync(http, limits, grant, ForwardProxy.Bounded(call, inspected, reader, cut: true).Usage.ProviderCost ?? 0);
                            lastProgress = Stopwatch.GetTimestamp();
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
                // The client left, or the provider stalled or broke off. Either way the provider's answer ends here (the
                // response is disposed), and the client must not take a cut body for a whole one.
                cut = true;
                http.Abort();
            }
            if (!ended)
            {
                if (!cut) reader.Finish();
                await CaptureAsync(limits, grant, ForwardProxy.Bounded(call, inspected, reader, cut));
                ended = true;
            }
            if (held is not null && heldLength > 0 && !cut) await ForwardProxy.WriteLastAsync(http, held.AsMemory(0, heldLength), ct);
            if (answer is not null && !cut) await ForwardProxy.WriteLastAsync(http, answer.Finish(), ct);
        }
        finally
        {
            // Something unforeseen broke the relay: the call is billed what was relayed, and no hold stays reserved.
            if (!ended) await CaptureAsync(limits, grant, ForwardProxy.Bounded(call, inspected, reader, cut: true));
            ArrayPool<byte>.Shared.Return(buffer);
            if (held is not null) ArrayPool<byte>.Shared.Return(held);
        }
    }

    private const int CopyBufferBytes = 16 * 1024;

    /// <summary>
    /// The provider's count when it arrived whole, else the estimate of what was relayed (flagged); a count out of
    /// range is never billed (the estimate is, with its anomaly).
    /// </summary>
    private static Task CaptureAsync(SpendKeyLimits limits, SpendKeyGrant grant, (BilledUsage Usage, string? Anomaly) billed) =>
        limits.EndAsync(grant, billed.Usage.ProviderCost ?? 0, billed.Usage.Estimated, billed.Anomaly);

    private static async Task NoteProgressAsync(HttpContext http, SpendKeyLimits limits, SpendKeyGrant grant, decimal amount)
    {
        try
        {
            await limits.ProgressAsync(grant, amount, CancellationToken.None);
        }
        catch (Exception e)
        {
            // A missed note only makes a crash bill less of this call; the stream goes on.
            http.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(SpendKeyGateway))
                .LogWarning("Spend key charge {ChargeId}: its progress could not be recorded ({Failure})", grant.ChargeId, e.GetType().Name);
        }
    }

    private static IResult Refused(HttpContext http, SpendKeyRefusal refusal, TimeSpan? retryAfter)
    {
        if (retryAfter is { } wait)
            http.Response.Headers.RetryAfter = Math.Max(1, (long)Math.Ceiling(wait.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
        return refusal switch
        {
            SpendKeyRefusal.Paused => Problems.Forbidden("spend_key_paused", "This spend key is paused."),
            SpendKeyRefusal.Expired => Problems.Forbidden("spend_key_expired", "This spend key has expired."),
            SpendKeyRefusal.ModelNotAllowed => Problems.Forbidden("model_not_allowed", "This spend key may not use this model."),
            SpendKeyRefusal.ProviderNotAllowed => Problems.Forbidden("provider_not_allowed", "This spend key may not use this provider."),
            SpendKeyRefusal.RateLimited => Problems.TooManyRequests("rate_limited", "This spend key's rate limit is reached; see Retry-After."),
            SpendKeyRefusal.RequestLimitReached => Problems.TooManyRequests("request_limit_reached", "This spend key's request limit for its cycle is reached."),
            SpendKeyRefusal.SpendLimitReached => Problems.SpendLimitReached("This call's worst case would take the spend key past its spend limit for its cycle."),
            // UnknownKey: revoked, rotated or deleted between the first look and the locked one.
            _ => Problems.Unauthorized("A live spend key is required: Authorization: Bearer lava_sk_… or x-api-key."),
        };
    }
}
