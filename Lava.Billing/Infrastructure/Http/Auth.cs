using Lava.Billing.Forward;
using Lava.Billing.Merchants;

namespace Lava.Billing.Infrastructure.Http;

/// <summary>Who is calling: the merchant a valid secret key belongs to. Bound into handlers as a parameter.</summary>
public sealed record Caller(string MerchantId, string SecretKeyId, string Scope)
{
    internal const string ItemKey = "lava.caller";

    public bool CanWrite => Scope == KeyScopes.Full;

    public static ValueTask<Caller?> BindAsync(HttpContext context) =>
        ValueTask.FromResult(context.Items[ItemKey] as Caller);
}

public static class Auth
{
    /// <summary>
    /// Every /v1 route requires a live secret key (401 otherwise, before routing runs). On the gateway the bearer may be
    /// a forward token instead; it is kept for the handler once its secret key is authenticated. A read-only key may
    /// read (GET, HEAD) and nothing else: 403 for every other method, whatever the route, so a new write route cannot
    /// be missed.
    /// </summary>
    public static IApplicationBuilder UseLavaAuth(this IApplicationBuilder app) =>
        app.Use(async (context, next) =>
        {
            if (!context.Request.Path.StartsWithSegments("/v1"))
            {
                await next(context);
                return;
            }
            var bearer = BearerToken(context.Request.Headers.Authorization.ToString());
            // The gateway also takes the SDK's forward token, which carries the secret key inside it.
            var gateway = IsGatewayPath(context.Request.Path);
            var forwardToken = gateway && bearer is not null ? ForwardToken.TryParse(bearer) : null;
            var secret = gateway ? forwardToken?.SecretKey : bearer;
            var keys = context.RequestServices.GetRequiredService<SecretKeyStore>();
            var caller = secret is null ? null : await keys.AuthenticateAsync(secret, gateway || ReChecksKeyWhenPosting(context.Request), context.RequestAborted);
            if (caller is null)
            {
                context.Response.Headers.WWWAuthenticate = "Bearer";
                await Problems.Unauthorized().ExecuteAsync(context);
                return;
            }
            // A read-only key reads and exports everything of its merchant and changes nothing. Refusing every method
            // but GET and HEAD here, ahead of all handlers, means a write route added later cannot forget the check.
            if (!caller.CanWrite && !HttpMethods.IsGet(context.Request.Method) && !HttpMethods.IsHead(context.Request.Method))
            {
                await Problems.ReadOnlyKey().ExecuteAsync(context);
                return;
            }
            context.Items[Caller.ItemKey] = caller;
            if (forwardToken is not null) context.Items[ForwardToken.ItemKey] = forwardToken;
            await next(context);
        });

    /// <summary>
    /// Usage reports, the hot path: their key may come from <see cref="SecretKeyStore"/>'s cache because the posting
    /// transaction checks it again (ReportPoster), so a revoked key never posts. Gateway calls too: the statements that
    /// write a call's record check the key again (ForwardCallStore), so a revoked key never reaches a provider.
    /// </summary>
    private static bool ReChecksKeyWhenPosting(HttpRequest request) =>
        HttpMethods.IsPost(request.Method) && (request.Path.Equals("/v1/requests") || request.Path.Equals("/v1/requests/batch"));

    private static bool IsGatewayPath(PathString path) =>
        path.StartsWithSegments("/v1/forward") || path.StartsWithSegments("/v1/rewrite");

    public static string? BearerToken(string header)
    {
        const string prefix = "Bearer ";
        if (header.Length <= prefix.Length || !header.StartsWith(prefix, StringComparison.OrdinalIgnoreCase)) return null;
        var token = header[prefix.Length..].Trim();
        return token.Length is > 0 and <= 4096 ? token : null;
    }
}
