namespace Lava.Billing.Infrastructure.Http;

/// <summary>Key scopes on routes: a read-only key may read, never change anything (403 before the handler runs).</summary>
public static class Scopes
{
    public static TBuilder RequireWriteScope<TBuilder>(this TBuilder builder) where TBuilder : IEndpointConventionBuilder
    {
        builder.Add(endpoint => endpoint.Metadata.Add(new Microsoft.AspNetCore.Http.ProducesResponseTypeMetadata(
            StatusCodes.Status403Forbidden, typeof(ProblemBody), ["application/problem+json"])));
        builder.AddEndpointFilter(async (invocation, next) =>
            invocation.HttpContext.Items[Caller.ItemKey] is Caller { CanWrite: false }
                ? Problems.ReadOnlyKey()
                : await next(invocation));
        return builder;
    }
}
