using System.Collections.Concurrent;
using System.Net;
using Lava.Billing.Infrastructure.Observability;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>Keeps every log entry written, with its structured fields.</summary>
public sealed class CapturedLogs : ILoggerProvider
{
    public sealed record Entry(string Category, LogLevel Level, string Message, IReadOnlyDictionary<string, object?> Fields, Exception? Error = null);

    public ConcurrentQueue<Entry> Entries { get; } = new();

    /// <summary>Each entry as one line of text: level, category, message, its fields and its exception.</summary>
    public IEnumerable<string> Lines => Entries.Select(e =>
        $"{e.Level} {e.Category}: {e.Message} [{string.Join(";", e.Fields.Select(f => $"{f.Key}={f.Value}"))}] {e.Error}");

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose() { }

    private sealed class Logger(CapturedLogs sink, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var fields = state as IEnumerable<KeyValuePair<string, object?>> ?? [];
            sink.Entries.Enqueue(new Entry(category, logLevel, formatter(state, exception), fields.ToDictionary(f => f.Key, f => f.Value), exception));
        }
    }
}

/// <summary>The service logging at Information by default, as it does outside tests, into <see cref="Logs"/>.</summary>
public class LoggedLavaApp : LavaApp
{
    public CapturedLogs Logs { get; } = new();

    protected override void ConfigureTestServices(IWebHostBuilder builder)
    {
        builder.UseSetting("Logging:LogLevel:Default", "Information");
        builder.ConfigureServices(s => s.AddSingleton<ILoggerProvider>(Logs));
    }
}

public sealed class RequestLoggingLavaApp : LoggedLavaApp
{
    protected override void ConfigureTestServices(IWebHostBuilder builder)
    {
        base.ConfigureTestServices(builder);
        builder.UseSetting($"Logging:LogLevel:{RequestLog.Category}", "Information");
    }
}

public class RequestLogOffTests(LoggedLavaApp app) : IClassFixture<LoggedLavaApp>
{
    [Fact]
    public async Task ByDefaultNeitherRequestsNorDatabaseCommandsAreLogged()
    {
        var m = await app.NewMerchantAsync();
        Assert.Equal(HttpStatusCode.OK, (await m.Client.GetJsonAsync("/v1/secret_keys")).Status);

        var perRequest = app.Logs.Entries.Where(e => e.Level < LogLevel.Warning &&
            (e.Category == RequestLog.Category || e.Category.StartsWith("Microsoft.AspNetCore", StringComparison.Ordinal) ||
             e.Category.StartsWith("Npgsql", StringComparison.Ordinal))).ToList();
        Assert.Empty(perRequest.Select(e => $"{e.Category}: {e.Message}"));
    }
}

public class RequestLogTests(RequestLoggingLavaApp app) : IClassFixture<RequestLoggingLavaApp>
{
    [Fact]
    public async Task TurnedOnEachRequestIsOneLineWithRouteStatusDurationAndMerchantButNoQueryString()
    {
        var m = await app.NewMerchantAsync();
        var customers = await m.Client.GetJsonAsync("/v1/customers?limit=5&api_key=sk_should_not_appear");
        Assert.Equal(HttpStatusCode.OK, customers.Status);

        var lines = app.Logs.Entries.Where(e => e.Category == RequestLog.Category && (string?)e.Fields["route"] == "/v1/customers/").ToList();
        var line = Assert.Single(lines);
        Assert.Equal(LogLevel.Information, line.Level);
        Assert.Equal("GET", line.Fields["method"]);
        Assert.Equal(200, line.Fields["status"]);
        Assert.Equal(m.MerchantId, line.Fields["merchant_id"]);
        Assert.IsType<double>(line.Fields["duration_ms"]);
        Assert.False(string.IsNullOrEmpty((string?)line.Fields["request_id"]));
        Assert.DoesNotContain(app.Logs.Entries, e => e.Message.Contains("sk_should_not_appear") || e.Message.Contains(m.SecretKey));
    }
}
