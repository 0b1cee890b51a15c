using Microsoft.Extensions.Configuration.Memory;

namespace Lava.Billing.Infrastructure.Observability;

/// <summary>
/// Log levels the service starts with, beneath every other configuration source, so <c>Logging__LogLevel__…</c> in the
/// environment or on the command line still wins. ASP.NET Core's own per-request lines (two or more at Information for
/// every request, with the full URL) and Npgsql's (one per command) stay off; <see cref="RequestLog"/> is the one line
/// per request, when turned on.
/// </summary>
public static class LoggingDefaults
{
    public static WebApplicationBuilder AddLavaLoggingDefaults(this WebApplicationBuilder builder)
    {
        builder.Configuration.Sources.Insert(0, new MemoryConfigurationSource
        {
            InitialData = new Dictionary<string, string?>
            {
                ["Logging:LogLevel:Microsoft.AspNetCore"] = "Warning",
                // Npgsql logs every command it runs at Information.
                ["Logging:LogLevel:Npgsql"] = "Warning",
                [$"Logging:LogLevel:{RequestLog.Category}"] = "Warning",
            },
        });
        return builder;
    }
}
