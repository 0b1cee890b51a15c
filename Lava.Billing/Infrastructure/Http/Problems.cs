using System.Text.Json.Serialization;

namespace Lava.Billing.Infrastructure.Http;

/// <summary>The one catalogue of problem responses (RFC 9457 plus the <c>error</c> member the SDK reads).</summary>
public static class Problems
{
    public static ProblemResult Validation(IDictionary<string, string[]> errors, string? detail = null) =>
        new(400, "validation_failed", "Invalid request", detail ?? "One or more fields are invalid.", errors);

    public static ProblemResult BadRequest(string code, string detail) => new(400, code, "Bad request", detail);

    public static ProblemResult ImmutableField(string field) =>
        new(400, "immutable_field", "Invalid request", $"'{field}' cannot be changed after creation.",
            new Dictionary<string, string[]> { [field] = ["cannot be changed after creation"] });

    public static ProblemResult MalformedJson(string detail, IDictionary<string, string[]>? errors = null) =>
        new(400, "invalid_json", "Malformed request body", detail, errors);

    public static ProblemResult Unauthorized(string detail = "A valid secret key is required: Authorization: Bearer <key>.") =>
        new(401, "unauthorized", "Unauthorized", detail);

    public static ProblemResult Forbidden(string code, string detail) => new(403, code, "Forbidden", detail);

    public static ProblemResult ReadOnlyKey() =>
        Forbidden("read_only_key", "This secret key is read-only: use a key with scope 'full' to make changes.");

    public static ProblemResult NotFound(string what, string id) =>
        new(404, "not_found", "Not found", $"No {what} with id '{id}'.");

    public static ProblemResult RouteNotFound() => new(404, "route_not_found", "Not found", "No such route.");

    public static ProblemResult MethodNotAllowed(string method) =>
        new(405, "method_not_allowed", "Method not allowed", $"This route does not take {method}; see the Allow header.");

    public static ProblemResult UnsupportedMediaType() =>
        new(415, "unsupported_media_type", "Unsupported media type", "This route takes a JSON body: send Content-Type: application/json.");

    public static ProblemResult Conflict(string code, string detail) => new(409, code, "Conflict", detail);

    public static ProblemResult IdempotencyConflict(string requestId) =>
        new(409, "idempotency_conflict", "Conflict",
            $"request_id '{requestId}' was already used with a different payload.");

    public static ProblemResult InsufficientCredits(string detail) =>
        new(402, "insufficient_credits", "Insufficient credits", detail);

    public static ProblemResult SpendLimitReached(string detail) => new(402, "spend_limit_reached", "Payment required", detail);

    public static ProblemResult TooManyRequests(string code, string detail) => new(429, code, "Too many requests", detail);

    public static ProblemResult PayloadTooLarge(long limitBytes) =>
        new(413, "payload_too_large", "Payload too large", $"The request body is larger than {limitBytes} bytes.");

    public static ProblemResult BatchTooLarge(int count, int maxItems) =>
        new(413, "batch_too_large", "Payload too large", $"The batch holds {count} reports; at most {maxItems} are accepted per call.");

    public static ProblemResult Unprocessable(string code, string detail) =>
        new(422, code, "Unprocessable request", detail);

    public static ProblemResult AmountOutOfRange(string detail) => Unprocessable("amount_out_of_range", detail);

    public static ProblemResult UpstreamNotAllowed(string detail) => new(400, "upstream_not_allowed", "Bad request", detail);

    public static ProblemResult UpstreamUnavailable(string detail) => new(502, "upstream_unavailable", "Bad gateway", detail);

    public static ProblemResult UpstreamTimeout(string detail) => new(504, "upstream_timeout", "Gateway timeout", detail);

    public static ProblemResult Unavailable(string detail) =>
        new(503, "service_unavailable", "Service unavailable", detail);

    public static ProblemResult Internal(string traceId) =>
        new(500, "internal_error", "Internal server error", $"An unexpected error occurred (trace {traceId}).");
}

public sealed record ProblemError(string Code, string Message);

public sealed record ProblemBody(
    string Type,
    string Title,
    int Status,
    string Detail,
    ProblemError Error,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IDictionary<string, string[]>? Errors);

/// <summary>A problem response; also usable as a typed union member in <c>Results&lt;…&gt;</c>.</summary>
public sealed class ProblemResult(int status, string code, string title, string detail,
    IDictionary<string, string[]>? errors = null) : IResult, IStatusCodeHttpResult, IContentTypeHttpResult
{
    public int StatusCode => status;
    int? IStatusCodeHttpResult.StatusCode => status;
    public string ContentType => "application/problem+json";
    public string Code => code;

    public ProblemBody Body => new($"https://docs.lava.billing/problems/{code.Replace('_', '-')}", title, status, detail,
        new ProblemError(code, detail), errors);

    public Task ExecuteAsync(HttpContext httpContext)
    {
        httpContext.Response.StatusCode = status;
        return httpContext.Response.WriteAsJsonAsync(Body, LavaJson.Options, ContentType);
    }
}
