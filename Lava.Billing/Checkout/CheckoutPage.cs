using System.Net;
using System.Text;

namespace Lava.Billing.Checkout;

/// <summary>
/// The test page: a developer completes a test-mode session by hand, as a payment integration would. Served only for
/// sessions made with a test key and while <see cref="CheckoutOptions.TestPage"/> is on. Its form posts back the
/// session's token, which is the capability; a cross-site post is refused by its Origin, and the page cannot be framed.
/// </summary>
public static class CheckoutPage
{
    public const string Path = "/checkout";

    private const string ContentSecurityPolicy =
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

    public static RouteGroupBuilder MapCheckoutPage(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup(Path).ExcludeFromDescription();
        group.MapGet("/{token}", Show).WithName("CheckoutTestPage");
        group.MapPost("/{token}", Pay).DisableAntiforgery().WithName("CheckoutTestPagePay");
        return group;
    }

    /// <summary>The payment reference the page completes with: the same on every submit, so a second click replays.</summary>
    public static string TestPaymentReference(string sessionId) => $"test_page:{sessionId}";

    private static async Task<IResult> Show(HttpContext http, string token, CheckoutStore sessions, CheckoutOptions options, TimeProvider clock,
        CancellationToken ct)
    {
        if (await FindAsync(token, sessions, options, ct) is not { } found) return NotFound(http);
        var s = found.Session;
        var status = s.StatusAt(clock.GetUtcNow());
        var body = new StringBuilder();
        body.Append($"<h1>Test checkout</h1><p>No money moves: this page stands in for the merchant's payment integration.</p>");
        body.Append($"<dl><dt>Session</dt><dd>{E(s.CheckoutSessionId)}</dd><dt>Buys</dt><dd>{E(s.CheckoutMode == CheckoutModes.Subscription ? $"plan {s.PlanId}" : $"credit bundle {s.CreditBundleId}")}</dd>");
        body.Append($"<dt>Amount</dt><dd>{E(Infrastructure.Money.Format(s.Amount))}</dd><dt>Status</dt><dd>{E(status)}</dd></dl>");
        if (status == "open")
        {
            body.Append($"<form method=\"post\" action=\"{E(Path + "/" + token)}\"><input type=\"hidden\" name=\"checkout_session_token\" value=\"{E(token)}\">");
            body.Append("<button type=\"submit\">Pay (test)</button></form>");
        }
        return Page(http, status == "expired" ? 410 : 200, body.ToString(), s.OriginUrl);
    }

    private static async Task<IResult> Pay(HttpContext http, string token, CheckoutStore sessions, CheckoutOptions options, TimeProvider clock,
        CancellationToken ct)
    {
        if (!SameOrigin(http)) return Page(http, 403, "<h1>Refused</h1><p>The form was posted from another site.</p>", null);
        if (!http.Request.HasFormContentType) return Page(http, 400, "<h1>Bad request</h1><p>Submit the page's form.</p>", null);
        IFormCollection form;
        try
        {
            form = await http.Request.ReadFormAsync(ct);
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            // A form past the reader's limits (fields, lengths) or a multipart body that ends early: not the page's form.
            // (A client that left gets this answer too, which goes nowhere.)
            return Page(http, 400, "<h1>Bad request</h1><p>Submit the page's form.</p>", null);
        }
        if (form["checkout_session_token"].ToString() != token) return Page(http, 400, "<h1>Bad request</h1><p>The form's session does not match.</p>", null);
        if (await FindAsync(token, sessions, options, ct) is not { } found) return NotFound(http);
        var (merchantId, s) = found;
        var outcome = await sessions.CompleteAsync(merchantId, s.CheckoutSessionId, TestPaymentReference(s.CheckoutSessionId), null, clock.GetUtcNow(), ct);
        return outcome switch
        {
            CheckoutStore.CompleteOutcome.Completed or CheckoutStore.CompleteOutcome.Replayed =>
                Page(http, 200, $"<h1>Paid</h1><p>Checkout session {E(s.CheckoutSessionId)} is completed.</p>", s.OriginUrl),
            CheckoutStore.CompleteOutcome.Expired => Page(http, 410, "<h1>Expired</h1><p>This checkout session has expired.</p>", s.OriginUrl),
            _ => Page(http, 409, "<h1>Not completed</h1><p>The session cannot be completed: retrieve it through the API to see why.</p>", s.OriginUrl),
        };
    }

    private static async Task<(string MerchantId, CheckoutSessionRow Session)?> FindAsync(string token, CheckoutStore sessions, CheckoutOptions options,
        CancellationToken ct)
    {
        if (!options.TestPage || token.Length > 64 || !token.StartsWith("cst_", StringComparison.Ordinal)) return null;
        return await sessions.FindByTokenAsync(token, ct) is { Session.TestMode: true } found ? found : null;
    }

    /// <summary>Browsers send Origin on a form post; one from another site is refused (no Origin: not a browser's cross-site post).</summary>
    private static bool SameOrigin(HttpContext http)
    {
        var origin = http.Request.Headers.Origin.ToString();
        if (origin.Length == 0) return http.Request.Headers["Sec-Fetch-Site"].ToString() is "" or "same-origin" or "none";
        return Uri.TryCreate(origin, UriKind.Absolute, out var o) &&
               string.Equals(o.Authority, http.Request.Host.Value, StringComparison.OrdinalIgnoreCase);
    }

    private static IResult NotFound(HttpContext http) => Page(http, 404, "<h1>Not found</h1><p>No test checkout session here.</p>", null);

    private static IResult Page(HttpContext http, int status, string body, string? originUrl)
    {
        http.Response.Headers.ContentSecurityPolicy = ContentSecurityPolicy;
        http.Response.Headers.XContentTypeOptions = "nosniff";
        http.Response.Headers["Referrer-Policy"] = "no-referrer";
        http.Response.Headers.CacheControl = "no-store";
        var back = originUrl is null ? "" : $"<p><a href=\"{E(originUrl)}\">Back to the merchant</a></p>";
        var html = $"<!doctype html><html><head><meta charset=\"utf-8\"><title>Test checkout</title></head><body>{body}{back}</body></html>";
        return Results.Content(html, "text/html; charset=utf-8", Encoding.UTF8, status);
    }

    private static string E(string? text) => WebUtility.HtmlEncode(text ?? "");
}
