using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;

namespace Lava.Billing.Infrastructure.Http;

/// <summary>
/// Turns every failure that escapes a handler into a problem response. Nothing about the exception (type, message,
/// stack) leaves the process except a trace id to correlate with the log.
/// </summary>
public static class ErrorHandling
{
    public static IApplicationBuilder UseLavaErrorHandling(this IApplicationBuilder app) =>
        app.UseExceptionHandler(errorApp => errorApp.Run(async context =>
        {
            var error = context.Features.Get<IExceptionHandlerFeature>()?.Error;
            // The exception handler middleware has already logged the error with its stack; only the problem goes out.
            await ToProblem(error, context).ExecuteAsync(context);
        }));

    private static ProblemResult ToProblem(Exception? error, HttpContext context) => error switch
    {
        BadHttpRequestException { StatusCode: 413 } => Problems.PayloadTooLarge(BodyLimit.Bytes(context)),
        BadHttpRequestException { InnerException: JsonException json } => FromJson(json),
        BadHttpRequestException bad when bad.StatusCode < 500 => Problems.BadRequest("bad_request", SafeDetail(bad)),
        JsonException json => FromJson(json),
        OperationCanceledException when context.RequestAborted.IsCancellationRequested =>
            new ProblemResult(499, "client_closed_request", "Client closed request", "The client went away."),
        _ => Problems.Internal(context.TraceIdentifier),
    };

    internal static ProblemResult FromJson(JsonException json)
    {
        var field = JsonPathToField(json.Path);
        return field is null
            ? Problems.MalformedJson("The request body is not valid JSON.")
            : Problems.MalformedJson($"Field '{field}' has the wrong type or format.",
                new Dictionary<string, string[]> { [field] = ["has the wrong type or format"] });
    }

    // "$.tiers[0].rate" -> "tiers[0].rate"
    internal static string? JsonPathToField(string? path) =>
        string.IsNullOrEmpty(path) || path == "$" ? null : path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : path;

    // Minimal APIs' own binding messages name framework internals ("Did you mean to use a Service?"): none is passed on.
    private static string SafeDetail(BadHttpRequestException bad) =>
        bad.Message.StartsWith("Implicit body inferred", StringComparison.Ordinal) ||
        bad.Message.Contains("from body", StringComparison.Ordinal) ||
        bad.Message.Contains("request body", StringComparison.OrdinalIgnoreCase)
            ? "A JSON request body is required."
            : "The request could not be read.";
}
