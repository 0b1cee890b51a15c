using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lava.Billing.Forward;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Translation;

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
        await result.ExecuteAsync(http);
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
        using var turn = await services.GetRequiredService<MerchantLimits>().EnterAsync(k.MerchantId, MerchantLimits.Kind.Requests, http.RequestAborted);
        if (turn is null) return MerchantLimits.Refused(MerchantLimits.Kind.Requests);
        var prices = await services.GetRequiredService<ModelPriceStore>().ListCurrentAsync(k.MerchantId, null, MaxModels, http.RequestAborted);
        var allowed = prices.Where(p => routes.For(p.Model) is { } r &&
                                        (k.AllowedModels is null || k.AllowedModels.Contains(p.Model, StringComparer.Ordinal)) &&
                                        (k.AllowedProviders is null || k.AllowedProviders.Contains(r.Provider, StringComparer.Ordinal)));
        return TypedResults.Ok(new RestModelList("list",
            allowed.Select(p => new RestModel(p.Model, "model", p.CreatedAt.ToUnixTimeSeconds(), p.OwnedBy)).ToList()));
    }

    private const int MaxModels = 1000;

    private static async Task<IResult> ServeAsync(HttpContext http)
    {
        var startedAt = Stopwatch.GetTimestamp();
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
        // Its merchant's turn (MerchantLimits) while it is admitted: the key's limits are taken under its row's lock, which
        // the key's concurrent calls wait for, each on a connection of the service's pool. Not while the body arrived, nor
        // while the provider answers.
        using var turn = await services.GetRequiredService<MerchantLimits>().EnterAsync(o.MerchantId, MerchantLimits.Kind.Requests, ct);
        if (turn is null) return MerchantLimits.Refused(MerchantLimits.Kind.Requests);
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
        // A token is at least one byte, so the body's length bounds the input tokens, priced at the dearer input rate. A
        // charge is one amount, bounded like every other (Money.Max): a worst case past it (an absurd max_tokens) holds
        // the bound, as a gateway hold does, instead of failing the charge's CHECK.
        var worstCase = Math.Min(Money.Max, Math.Max(ProviderCost.Compute(new NormalizedUsage(payload.Length, 0, 0, maxOutput), price),
                                                     ProviderCost.Compute(new NormalizedUsage(0, 0, payload.Length, maxOutput), price)));
        // The prompt's cost: what the call is billed if its client leaves before the provider answers, and what the crash
        // rule bills until a stream shows more.
        var estimate = ForwardRelay.Initial(format, price, inspected).ProviderCost ?? 0;

        var (grant, refusal, retryAfter) = await limits.ReserveAsync(key,
            new SpendKeyCall(model, route.Provider, worstCase, estimate, forward.PendingLease(upstream.Host)), ct);
        if (grant is null) return Refused(http, refusal!.Value, retryAfter);
        turn.Dispose();
        var keyStyle = shape == RequestShapes.Anthropic ? ProviderKeyStyle.AnthropicApiKey : ProviderKeyStyle.Bearer;
        var request = http.Request;
        var call = new RelayCall(grant.ChargeId, o.MerchantId, null, upstream, format, price, inspected, translation, () =>
        {
            var message = new HttpRequestMessage(HttpMethod.Post, upstream) { Content = new ByteArrayContent(payload) };
            ForwardHeaders.CopyRequest(request.Headers, message);
            message.Headers.Remove("x-api-key");
            message.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
            ForwardHeaders.SetProviderKey(message, managedKey, keyStyle);
            translation?.AdjustHeaders(message);
            return message;
        }, startedAt);
        // From here the call holds a charge: the relay captures it or releases it on every way out, by /v1/forward's rules.
        return await services.GetRequiredService<ForwardRelay>().RunAsync(http, call, new ChargeBilling(limits, grant));
    }

    /// <summary>A spend-key call's usage: its charge captured at the provider's cost (and posted in the same transaction).</summary>
    private sealed class ChargeBilling(SpendKeyLimits limits, SpendKeyGrant grant) : IRelayBilling
    {
        public Task ProgressAsync(BilledUsage seen) => limits.ProgressAsync(grant, seen.ProviderCost ?? 0, CancellationToken.None);

        public Task ServeAsync(BilledUsage usage, string? anomaly) => limits.EndAsync(grant, usage.ProviderCost ?? 0, usage.Estimated, anomaly);

        public Task ReleaseAsync() => limits.EndAsync(grant, null, estimated: false);

        public Task PostServedAsync() => Task.CompletedTask;
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
