using Lava.Billing.Infrastructure.Http;

namespace Lava.Billing.Forward;

public static class ForwardApi
{
    public static RouteGroupBuilder MapForwardApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/forward").WithTags("Gateway");
        group.MapMethods("/", [HttpMethods.Get, HttpMethods.Post], Forward).WithoutMerchantTurn().WithName("Forward")
            .WithSummary("Forward a call to an allowed provider, stream its answer back and bill its usage");
        return group;
    }

    public static Task<IResult> Forward(HttpContext http, Caller caller, ForwardProxy proxy) => proxy.ForwardAsync(http, caller);
}
