using Microsoft.AspNetCore.Http.Features;
using Microsoft.Net.Http.Headers;

namespace Lava.Billing.Infrastructure.Http;

/// <summary>
/// One check at the edge for every route (docs/input.md): the path, the query string, every header and every JSON body
/// must be clean text (<see cref="InputText"/>), and a JSON object may not name a member twice. A refused request gets
/// 400 before any handler, validator or SQL sees it. The bearer token is the one exception: auth answers 401 for it.
/// </summary>
public static class InputGuard
{
    /// <summary>Headers whose value is itself a JSON document (the gateway's <c>x-lava-metadata</c>).</summary>
    private static readonly string[] JsonHeaders = ["x-lava-metadata"];

    public static IApplicationBuilder UseLavaInputGuard(this IApplicationBuilder app) =>
        app.Use(async (context, next) =>
        {
            var problem = CheckUrl(context) ?? CheckHeaders(context.Request) ?? await CheckBodyAsync(context.Request, context.RequestAborted);
            if (problem is not null)
            {
                await problem.ExecuteAsync(context);
                return;
            }
            await next(context);
        });

    private static ProblemResult? CheckUrl(HttpContext context)
    {
        var request = context.Request;
        // Kestrel's raw request target: bytes that are not UTF-8 stay percent-encoded in the decoded path.
        var raw = context.Features.Get<IHttpRequestFeature>()?.RawTarget?.Split('?')[0];
        if (!InputText.IsClean(request.PathBase.Value) || !InputText.IsClean(request.Path.Value) || !InputText.IsCleanPercentEncoded(raw))
            return Problems.InvalidText("path");
        foreach (var (name, values) in request.Query)
        {
            if (!InputText.IsClean(name)) return Problems.InvalidText("query");
            foreach (var value in values)
                if (!InputText.IsClean(value)) return Problems.InvalidText(name);
        }
        // Bytes that are not UTF-8 survive query decoding as they were sent (%C3%28), so the raw form is checked too.
        return InputText.IsCleanPercentEncoded(request.QueryString.Value) ? null : Problems.InvalidText("query");
    }

    private static ProblemResult? CheckHeaders(HttpRequest request)
    {
        foreach (var (name, values) in request.Headers)
        {
            // A bad bearer token is a bad credential: auth answers it 401.
            if (name.Equals(HeaderNames.Authorization, StringComparison.OrdinalIgnoreCase)) continue;
            foreach (var value in values)
                if (!InputText.IsClean(value)) return Problems.InvalidText(name.ToLowerInvariant());
        }
        foreach (var name in JsonHeaders)
        {
            foreach (var value in request.Headers[name])
            {
                if (value is not null && InputText.CheckJson(System.Text.Encoding.UTF8.GetBytes(value)) is { } refusal)
                    return Refuse(refusal, name);
            }
        }
        return null;
    }

    /// <summary>
    /// The body is buffered (the body limit bounds it) and rewound, so the endpoint reads it again as if untouched.
    /// </summary>
    private static async Task<ProblemResult?> CheckBodyAsync(HttpRequest request, CancellationToken ct)
    {
        if (request.ContentLength == 0 || !HasBody(request)) return null;
        var declaredJson = request.ContentType?.Contains("json", StringComparison.OrdinalIgnoreCase) == true;
        if (request.ContentType is not null && !declaredJson) return null;
        // In memory up to the body limit (which bounds it anyway), never spilled to a temporary file.
        request.EnableBuffering(bufferThreshold: (int)Math.Min(BodyLimit.Bytes(request.HttpContext), int.MaxValue));
        using var buffer = new MemoryStream();
        await request.Body.CopyToAsync(buffer, ct);
        request.Body.Position = 0;
        var bytes = buffer.GetBuffer().AsSpan(0, (int)buffer.Length);
        // Without a Content-Type a body is JSON when it looks like it, as the gateway reads it.
        if (!declaredJson && bytes.TrimStart(" \t\r\n"u8) is not [(byte)'{' or (byte)'[', ..]) return null;
        return InputText.CheckJson(bytes) is { } refusal ? Refuse(refusal, null) : null;
    }

    private static bool HasBody(HttpRequest request) =>
        request.ContentLength > 0 || request.Headers.TransferEncoding.Count > 0 ||
        request.HttpContext.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody == true;

    private static ProblemResult Refuse(InputText.JsonRefusal refusal, string? header)
    {
        var field = header is null ? refusal.Path ?? "body" : refusal.Path is null ? header : $"{header}.{refusal.Path}";
        return refusal.DuplicateKey ? Problems.DuplicateJsonKey(field) : Problems.InvalidText(field);
    }
}
