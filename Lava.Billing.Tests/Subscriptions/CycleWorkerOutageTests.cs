using System.Net;
using System.Net.Sockets;
using Lava.Billing.Infrastructure.Resilience;
using Lava.Billing.Subscriptions;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Lava.Billing.Tests.Subscriptions;

/// <summary>A worker whose database is away writes one line for the outage, not a stack per round.</summary>
public class CycleWorkerOutageTests
{
    private static readonly DateTimeOffset Start = new(2026, 1, 15, 12, 0, 0, TimeSpan.Zero);

    /// <summary>A data source on a port nothing listens on: every round fails to connect.</summary>
    private static NpgsqlDataSource Unreachable()
    {
        var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return NpgsqlDataSource.Create($"Host=127.0.0.1;Port={port};Username=lava;Password=x;Database=lava;Timeout=2;Pooling=false");
    }

    private static async Task<Exception> ConnectionFailureAsync()
    {
        await using var source = Unreachable();
        return await Assert.ThrowsAnyAsync<Exception>(async () => await source.OpenConnectionAsync());
    }

    private static async Task WaitForAsync(Func<bool> condition, TimeSpan limit)
    {
        var until = DateTime.UtcNow + limit;
        while (!condition() && DateTime.UtcNow < until) await Task.Delay(50);
    }

    /// <summary>A "database" that takes each connection and drops it at once, counting them: one per worker round.</summary>
    private sealed class DroppingServer : IAsyncDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private readonly Task _accepting;
        private int _connections;

        public DroppingServer()
        {
            _listener.Start();
            _accepting = Task.Run(async () =>
            {
                try
                {
                    while (true)
                    {
                        using var client = await _listener.AcceptTcpClientAsync();
                        Interlocked.Increment(ref _connections);
                    }
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
            });
        }

        public int Connections => Volatile.Read(ref _connections);

        public NpgsqlDataSource Source() => NpgsqlDataSource.Create(
            $"Host=127.0.0.1;Port={((IPEndPoint)_listener.LocalEndpoint).Port};Username=lava;Password=x;Database=lava;Timeout=2");

        public async ValueTask DisposeAsync()
        {
            _listener.Stop();
            await _accepting;
        }
    }

    [Fact]
    public async Task TheCycleWorkerLogsALostDatabaseOnceWithoutAStackThenAtMostOnceAMinute()
    {
        var logs = new CapturedLogs();
        using var factory = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Trace).AddProvider(logs));
        await using var server = new DroppingServer();
        await using var source = server.Source();
        var clock = new ManualClock(Start);
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["Billing:CycleCheckSeconds"] = "1" }).Build();
        var worker = new CycleWorker(new CycleProcessor(source, NullLogger<CycleProcessor>.Instance), clock, configuration, factory.CreateLogger<CycleWorker>());

        await worker.StartAsync(CancellationToken.None);
        try
        {
            // Rounds a second apart, all within one minute of the worker's clock.
            await WaitForAsync(() => server.Connections >= 4, TimeSpan.FromSeconds(30));
            Assert.True(server.Connections >= 4, $"only {server.Connections} rounds ran");
            var first = logs.Entries.ToArray();
            var warning = Assert.Single(first);
            Assert.Equal(LogLevel.Warning, warning.Level);
            Assert.Null(warning.Error);
            Assert.Contains("cannot reach the database", warning.Message);

            clock.Advance(OutageLog.Reminder);
            await WaitForAsync(() => logs.Entries.Count >= 2, TimeSpan.FromSeconds(30));
            var rounds = server.Connections;
            await WaitForAsync(() => server.Connections >= rounds + 2, TimeSpan.FromSeconds(30));
            var all = logs.Entries.ToArray();
            Assert.Equal(2, all.Length);
            Assert.All(all, e => Assert.True(e.Level == LogLevel.Warning && e.Error is null, $"{e.Level} {e.Message}"));
            Assert.Contains("still cannot reach the database after 60 s", all[1].Message);
        }
        finally
        {
            await worker.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task AWorkerThatReachesTheDatabaseAgainSaysSoOnceAtInformation()
    {
        var logs = new CapturedLogs();
        using var factory = LoggerFactory.Create(b => b.SetMinimumLevel(LogLevel.Trace).AddProvider(logs));
        var clock = new ManualClock(Start);
        var outage = new OutageLog(factory.CreateLogger("worker"), clock, "Subscription cycle processing");
        var failure = await ConnectionFailureAsync();

        outage.Succeeded();
        Assert.True(outage.Failed(failure));
        clock.Advance(TimeSpan.FromSeconds(30));
        Assert.True(outage.Failed(failure));
        clock.Advance(TimeSpan.FromSeconds(45));
        outage.Succeeded();
        outage.Succeeded();

        var entries = logs.Entries.ToArray();
        Assert.Equal([LogLevel.Warning, LogLevel.Information], entries.Select(e => e.Level));
        Assert.Contains("reaches the database again after 75 s (2 rounds failed)", entries[1].Message);
        Assert.All(entries, e => Assert.Null(e.Error));
    }

    [Fact]
    public void AFailureThatIsNotALostDatabaseIsLeftToTheWorker()
    {
        var logs = new CapturedLogs();
        using var factory = LoggerFactory.Create(b => b.AddProvider(logs));
        var outage = new OutageLog(factory.CreateLogger("worker"), new ManualClock(Start), "Subscription cycle processing");

        Assert.False(outage.Failed(new OverflowException("a bug")));
        Assert.False(outage.Failed(new PostgresException("division by zero", "ERROR", "ERROR", PostgresErrorCodes.DivisionByZero)));
        Assert.Empty(logs.Entries);
    }
}
