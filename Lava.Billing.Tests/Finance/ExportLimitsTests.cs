
using Lava.Billing.Finance;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Infrastructure.Http;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Lava.Billing.Tests.Finance;

/// <summary>Per-key caps and the stall limit, with clients that never take a byte.</summary>
public class ExportLimitsTests
{
    private static readonly ExportLimits Limits = new(Options.Create(new ExportOptions { MaxPerKey = 2, StallSeconds = 1 }),
        NullLogger<ExportLimits>.Instance);

    /// <summary>A response body whose writes never complete until cancelled: a reader that reads nothing.</summary>
    private sealed class NeverReadBody : MemoryStream
    {
        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default) =>
            await Task.Delay(Timeout.Infinite, ct);
    }

    private static DefaultHttpContext Context(string keyId)
    {
        var http = new DefaultHttpContext { RequestServices = new ServiceCollection().AddLogging().BuildServiceProvider() };
        http.Items["lava.caller"] = new Caller("mer_x", keyId, "read_only");
        http.Response.Body = new NeverReadBody();
        return http;
    }

    private static Task Export(HttpContext http) => Limits.RunAsync(http, async ct =>
    {
        await http.Response.Body.WriteAsync(new byte[100], ct);
    });

    [Fact]
    public async Task AKeyBeyondItsCapIs429WhileAnotherKeyStillExportsAndAStalledReaderIsCut()
    {
        var held = new[] { Export(Context("key_a")), Export(Context("key_a")) };
        await Task.Delay(100);
        var third = Context("key_a");
        third.Response.Body = new MemoryStream();
        await Export(third);
        Assert.Equal(StatusCodes.Status429TooManyRequests, third.Response.StatusCode);
        Assert.Equal("5", third.Response.Headers.RetryAfter.ToString());

        var other = Export(Context("key_b"));
        Assert.False(other.IsCompleted);

        // After the stall limit every stalled export ends, and key_a may export again.
        var all = Task.WhenAll(held.Append(other));
        Assert.Same(all, await Task.WhenAny(all, Task.Delay(TimeSpan.FromSeconds(5))));
        var again = Context("key_a");
        var running = Export(again);
        await Task.Delay(100);
        Assert.NotEqual(StatusCodes.Status429TooManyRequests, again.Response.StatusCode);
        await running;
    }
}

/// <summary>Exports run on their own pool, apart from the primary's (application name lava-billing-export).</summary>
public class ExportPoolTests(Lava.Billing.Tests.Infrastructure.LavaApp app) : Lava.Billing.Tests.Infrastructure.ApiTest(app)
{
    [Fact]
    public void TheExportPoolIsNotThePrimaryPoolAndIsSmall()
    {
        var read = App.Services.GetRequiredService<ReadDataSource>();
        var primary = App.Services.GetRequiredService<Npgsql.NpgsqlDataSource>();
        Assert.NotSame(primary, read.Exports);
        var csb = new Npgsql.NpgsqlConnectionStringBuilder(read.Exports.ConnectionString);
        Assert.Equal(new ExportOptions().MaxConnections, csb.MaxPoolSize);
        Assert.Equal("lava-billing-export", csb.ApplicationName);
    }
}
