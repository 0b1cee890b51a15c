using Lava.Billing.Forward;
using Lava.Billing.Infrastructure.Http;

namespace Lava.Billing.Translation;

public static class RewriteApi
{
    /// <summary>
    /// <c>POST /v1/rewrite/{format}/{provider URL}</c>, as the SDK's <c>gateway(url, {format})</c> builds it: the full
    /// provider URL, scheme included, unencoded. <c>{format}</c> is the shape the client speaks; the URL says which
    /// shape the provider speaks.
    /// </summary>
    public static RouteGroupBuilder MapRewriteApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/rewrite").WithTags("Gateway");
        group.MapPost("/{format}/{**url}", Rewrite).WithoutMerchantTurn().WithName("Rewrite")
            .WithSummary("Forward a chat call to a provider of the other shape, translating the request and the answer, and bill its usage");
        return group;
    }

    public static Task<IResult> Rewrite(HttpContext http, Caller caller, string format, ForwardProxy proxy) => proxy.RewriteAsync(http, caller, format);
}
