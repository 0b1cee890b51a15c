using System.Diagnostics;
using Lava.Billing.Infrastructure.Http;

namespace Lava.Billing.Infrastructure.Observability;

/// <summary>
/// One log line per request in category <see cref="Category"/>, at Information, which the service filters out unless the
/// operator turns it on (<c>Logging__LogLevel__Lava.Requests=Information</c>). It names the route's pattern, never the
/// path or query string the caller sent (a gateway query string can carry a provider key), and the merchant, never a key.
/// With <c>Logging__Console__FormatterName=json</c> each line is one JSON object whose <c>State</c> holds these fields.
/// </summary>
public static partial class RequestLog
{
    public const string Category = "Lava.Requests";

    public static IApplicationBuilder UseLavaRequestLog(this IApplicationBuilder app)
    {
        var log = app.ApplicationServices.GetRequiredService<ILoggerFactory>().CreateLogger(Category);
        return app.Use(async (context, next) =>
        {
            if (!log.IsEnabled(LogLevel.Information))
            {
                await next(context);
                return;
            }
            var startedAt = Stopwatch.GetTimestamp();
            try
            {
                await next(context);
            }
            finally
            {
                var route = (context.GetEndpoint() as RouteEndpoint)?.RoutePattern.RawText ?? "(none)";
                var merchantId = (context.Items[Caller.ItemKey] as Caller)?.MerchantId;
                var durationMs = Math.Round(Stopwatch.GetElapsedTime(startedAt).TotalMilliseconds, 2);
                Served(log, context.Request.Method, route, context.Response.StatusCode, durationMs, context.TraceIdentifier, merchantId);
            }
        });
    }

    [LoggerMessage(Level = LogLevel.Information,
        Message = "{method} {route} answered {status} in {duration_ms} ms (request {request_id}, merchant {merchant_id})")]
    private static partial void Served(ILogger log, string method, string route, int status, double duration_ms, string request_id,
        string? merchant_id);
}
