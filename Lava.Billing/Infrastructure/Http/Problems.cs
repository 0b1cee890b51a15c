using System.Text.Json.Serialization;

namespace Lava.Billing.Infrastructure.Http;

/// <summary>The one catalogue of problem responses (RFC 9457 plus the <c>error</c> member the SDK reads).</summary>
public static class Problems
{
    public static ProblemResult Validation(IDictionary<string, string[]> errors, string? detail = null) =>
        new(400, "validation_failed", "Invalid request", detail ?? Describe(errors), errors);

    /// <summary>
    /// Every field message in one line ("input_tokens: must be between …; cost: is required"): SDKs show only
    /// <c>error.message</c>, so it must say what to fix. A message that already names its field is used as it is.
    /// </summary>
    private static string Describe(IDictionary<string, string[]> errors) =>
        errors.Count == 0
            ? "The request is invalid."
            : string.Join("; ", errors.SelectMany(field => field.Value.Select(message =>
                message.StartsWith(field.Key, StringComparison.Ordinal) ? message : $"{field.Key}: {message}")));

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

    /// <summary>404 naming what was looked up by what: "No meter with slug 'gpt'." when a slug was given.</summary>
    public static ProblemResult NotFound(string what, string id, string by = "id") =>
        new(404, "not_found", "Not found", $"No {what} with {by} '{id}'.");

    public static ProblemResult RouteNotFound() => new(404, "route_not_found", "Not found", "No such route.");

    public static ProblemResult MethodNotAllowed(string method) =>
        new(405, "method_not_allowed", "Method not allowed", $"This route does not take {method}; see the Allow header.");

    public static ProblemResult UnsupportedMediaType() =>
        new(415, "unsupported_media_type", "Unsupported media type", "This route takes a JSON body: send Content-Type: application/json.");

    public static ProblemResult Conflict(string code, string detail) => new(409, code, "Conflict", detail);

    public static ProblemResult Gone(string code, string detail) => new(410, code, "Gone", detail);

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

    public static ProblemResult InvalidText(string field) =>
        new(400, "invalid_text", "Invalid request", $"'{field}' {InputText.Rule}.",
            new Dictionary<string, string[]> { [field] = [InputText.Rule] });

    public static ProblemResult DuplicateJsonKey(string field) =>
        new(400, "duplicate_json_key", "Malformed request body", $"'{field}' is given more than once in one JSON object.",
            new Dictionary<string, string[]> { [field] = ["is given more than once"] });

    /// <summary>The database cannot be reached: the caller should retry after <paramref name="retryAfterSeconds"/>.</summary>
    public static ProblemResult DatabaseUnavailable(int retryAfterSeconds) =>
        new(503, "database_unavailable", "Service unavailable",
            $"The database is unreachable; retry in {retryAfterSeconds} s. Retrying a usage report with the same request_id " +
            "is safe: it is posted at most once, and a report that was already posted answers with its original response.",
            retryAfterSeconds: retryAfterSeconds);

    /// <summary>Rows the report must lock stayed busy (a lock timeout, deadlock or serialization failure) through its retries.</summary>
    public static ProblemResult LedgerBusy(int retryAfterSeconds) =>
        new(503, "ledger_busy", "Service unavailable",
            $"The balances this report moves stayed locked by other work; retry in {retryAfterSeconds} s with the same request_id " +
            "(nothing was posted).", retryAfterSeconds: retryAfterSeconds);

    public static ProblemResult TooManyAtOnce(MerchantLimits.Kind kind, int retryAfterSeconds) => kind == MerchantLimits.Kind.Batches
        ? new(429, "too_many_batches", "Too many requests",
            "This merchant already has as many batches posting and waiting as it may; nothing of this one was posted. Send it again later.",
            retryAfterSeconds: retryAfterSeconds)
        : new(429, "too_many_requests", "Too many requests",
            "This merchant already has as many calls running and waiting as it may; this one did nothing. Send it again later.",
            retryAfterSeconds: retryAfterSeconds);

    /// <param name="who">"This key" or "This merchant": whose limit was reached.</param>
    public static ProblemResult TooManyExports(string who, int limit, int retryAfterSeconds) =>
        new(429, "too_many_exports", "Too many requests",
            $"{who} already runs {limit} exports at once; retry when one has finished.", retryAfterSeconds: retryAfterSeconds);
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
    IDictionary<string, string[]>? errors = null, int? retryAfterSeconds = null) : IResult, IStatusCodeHttpResult, IContentTypeHttpResult
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
        if (retryAfterSeconds is { } seconds) httpContext.Response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return httpContext.Response.WriteAsJsonAsync(Body, LavaJson.Options, ContentType);
    }
}
