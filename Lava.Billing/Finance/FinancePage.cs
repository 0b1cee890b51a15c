namespace Lava.Billing.Finance;

/// <summary>
/// The finance page at <c>/finance</c>: static HTML and a small script, embedded in the assembly so it is served the
/// same whatever the content root. Outside /v1, so no key is needed to load it; the page asks for one and sends it
/// only to the API. A strict content security policy allows the page's own script and the API, nothing else.
/// </summary>
public static class FinancePage
{
    private static readonly Dictionary<string, string> Assets = new(StringComparer.Ordinal)
    {
        ["index.html"] = "text/html; charset=utf-8",
        ["finance.js"] = "text/javascript; charset=utf-8",
        ["finance.css"] = "text/css; charset=utf-8",
    };

    private const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' blob: data:; " +
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

    public static RouteGroupBuilder MapFinancePage(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/finance").ExcludeFromDescription();
        group.MapGet("", (HttpContext http) => Asset(http, "index.html")).WithName("FinancePage");
        group.MapGet("/{file}", Asset).WithName("FinancePageAsset");
        return group;
    }

    private static IResult Asset(HttpContext http, string file)
    {
        if (!Assets.TryGetValue(file, out var contentType)) return Infrastructure.Http.Problems.RouteNotFound();
        var stream = typeof(FinancePage).Assembly.GetManifestResourceStream("finance/" + file)!;
        http.Response.Headers.ContentSecurityPolicy = ContentSecurityPolicy;
        http.Response.Headers.XContentTypeOptions = "nosniff";
        http.Response.Headers["Referrer-Policy"] = "no-referrer";
        http.Response.Headers.CacheControl = "no-cache";
        return Results.Stream(stream, contentType);
    }
}
