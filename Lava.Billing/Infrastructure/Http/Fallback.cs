using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.AspNetCore.Routing.Template;

namespace Lava.Billing.Infrastructure.Http;

/// <summary>
/// What an unmatched request is told. A path no route has is 404; a path that exists but not for this method is 405
/// (with Allow); a route that takes a JSON body reached without one is 415. Routing alone would answer all three 404.
/// </summary>
public static class Fallback
{
    private sealed record Route(TemplateMatcher Matcher, string[] Methods, bool TakesJson);

    public static IEndpointConventionBuilder MapLavaFallback(this IEndpointRouteBuilder routes)
    {
        var sources = routes.DataSources;
        IReadOnlyList<Route>? table = null;
        return routes.MapFallback((HttpContext http) =>
        {
            table ??= Build(sources);
            var path = http.Request.Path;
            var matching = table.Where(r => r.Matcher.TryMatch(path, new RouteValueDictionary())).ToList();
            if (matching.Count == 0) return Problems.RouteNotFound();
            var forMethod = matching.Where(r => r.Methods.Contains(http.Request.Method, StringComparer.OrdinalIgnoreCase)).ToList();
            if (forMethod.Count == 0)
            {
                http.Response.Headers.Allow = string.Join(", ", matching.SelectMany(r => r.Methods).Distinct().Order());
                return Problems.MethodNotAllowed(http.Request.Method);
            }
            return Problems.UnsupportedMediaType();
        }).ExcludeFromDescription();
    }

    private static List<Route> Build(ICollection<EndpointDataSource> sources) =>
        sources.SelectMany(s => s.Endpoints).OfType<RouteEndpoint>()
            .Where(e => e.Metadata.GetMetadata<HttpMethodMetadata>() is not null && e.RoutePattern.RawText is not null)
            .Select(e => new Route(
                new TemplateMatcher(TemplateParser.Parse(Template(e.RoutePattern)), new RouteValueDictionary()),
                e.Metadata.GetMetadata<HttpMethodMetadata>()!.HttpMethods.ToArray(),
                e.Metadata.GetMetadata<Microsoft.AspNetCore.Http.Metadata.IAcceptsMetadata>() is not null))
            .ToList();

    // TemplateParser does not take "**" catch-alls; one star matches the same paths.
    private static string Template(RoutePattern pattern) => pattern.RawText!.Replace("{**", "{*", StringComparison.Ordinal);
}
