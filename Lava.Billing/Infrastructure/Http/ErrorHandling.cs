using System.Net.Sockets;
using System.Text.Json;
using Lava.Billing.Infrastructure.Resilience;
using Microsoft.AspNetCore.Diagnostics;
using Npgsql;

namespace Lava.Billing.Infrastructure.Http;

/// <summary>
/// Turns every failure that escapes a handler into a problem response. Nothing about the exception (type, message,
/// stack) leaves the process except a trace id to correlate with the log. A client's mistake and an unreachable
/// database are expected, not bugs: they are logged here in one line without a stack (Information and Warning); only
/// what remains, a 500, keeps the framework's Error line with its stack.
/// </summary>
public static class ErrorHandling
{
    /// <summary>What a 503 for an unreachable database asks the client to wait before retrying.</summary>
    public const int DatabaseRetryAfterSeconds = 5;

    public static IApplicationBuilder UseLavaErrorHandling(this IApplicationBuilder app) =>
        app.UseExceptionHandler(new ExceptionHandlerOptions
        {
            ExceptionHandler = async context =>
            {
                var error = context.Features.Get<IExceptionHandlerFeature>()?.Error;
                var problem = ToProblem(error, context);
                if (problem.StatusCode < 500 || problem.StatusCode == StatusCodes.Status503ServiceUnavailable)
                    LogExpected(context, error!, problem);
                await problem.ExecuteAsync(context);
            },
            SuppressDiagnosticsCallback = c => ToProblem(c.Exception, c.HttpContext) is var p &&
                                                (p.StatusCode < 500 || p.StatusCode == StatusCodes.Status503ServiceUnavailable),
        });

    private static ProblemResult ToProblem(Exception? error, HttpContext context) => error switch
    {
        BadHttpRequestException { StatusCode: 413 } => Problems.PayloadTooLarge(BodyLimit.Bytes(context)),
        BadHttpRequestException { InnerException: JsonException json } => FromJson(json),
        BadHttpRequestException bad when bad.StatusCode < 500 => Problems.BadRequest("bad_request", SafeDetail(bad)),
        JsonException json => FromJson(json),
        OperationCanceledException when context.RequestAborted.IsCancellationRequested =>
            new ProblemResult(499, "client_closed_request", "Client closed request", "The client went away."),
        // Text the edge should have refused (InputGuard): still the caller's input, never a 500.
        PostgresException { SqlState: PostgresErrorCodes.CharacterNotInRepertoire or PostgresErrorCodes.UntranslatableCharacter } =>
            Problems.InvalidText("body"),
        _ when IsDatabaseUnavailable(error) => Problems.DatabaseUnavailable(DatabaseRetryAfterSeconds),
        _ => Problems.Internal(context.TraceIdentifier),
    };

    /// <summary>
    /// The database is down, restarting, refusing connections or failing over: connection errors (08xxx), an
    /// administrator's or a crash's termination of the session (57P01–57P03), sockets that fail, a pool that cannot
    /// hand out a connection in time, what Npgsql itself calls transient, and whatever the failover retry counts as a
    /// connection failure — a host list with no primary in it right now ("No suitable host was found") among them.
    /// </summary>
    public static bool IsDatabaseUnavailable(Exception? error) => error switch
    {
        null => false,
        PostgresException pg => pg.SqlState.StartsWith("08", StringComparison.Ordinal) ||
                                pg.SqlState is PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown
                                    or PostgresErrorCodes.CannotConnectNow or PostgresErrorCodes.TooManyConnections,
        NpgsqlException npgsql => npgsql.IsTransient || DatabaseRetry.IsConnectionFailure(npgsql) || IsDatabaseUnavailable(npgsql.InnerException),
        SocketException => true,
        _ => error.InnerException is { } inner && IsDatabaseUnavailable(inner),
    };

    private static void LogExpected(HttpContext context, Exception error, ProblemResult problem)
    {
        var log = context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(ErrorHandling).FullName!);
        // The path only: a query string can carry a provider key (the gateway's u=).
        if (problem.StatusCode == StatusCodes.Status503ServiceUnavailable)
        {
            log.LogWarning("{Method} {Path} answered 503 {Code}: {ExceptionType}: {Reason}",
                context.Request.Method, context.Request.Path, problem.Code, error.GetType().Name, Innermost(error).Message);
        }
        else
        {
            log.LogInformation("{Method} {Path} answered {Status} {Code}: {ExceptionType}",
                context.Request.Method, context.Request.Path, problem.StatusCode, problem.Code, error.GetType().Name);
        }
    }

    private static Exception Innermost(Exception e) => e.InnerException is { } inner ? Innermost(inner) : e;

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
