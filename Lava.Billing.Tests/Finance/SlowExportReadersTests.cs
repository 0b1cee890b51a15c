using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text;
using Dapper;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Finance;

/// <summary>
/// The service on a loopback port with small pools: the primary's as small as the export pool plus what the export caps
/// admit, so exports sharing it would leave nothing for anybody else.
/// </summary>
public sealed class SlowExportApp : LavaApp
{
    public const int PrimaryPool = 6;
    public const int ExportPool = 6;
    public const int PerKey = 2;
    public const int PerMerchant = 4;
    public const int StallSeconds = 15;

    public SlowExportApp() => UseKestrel();

    protected override void ConfigureTestServices(IWebHostBuilder builder) => builder
        .UseUrls("http://127.0.0.1:0")
        .UseSetting("ConnectionStrings:Billing", new NpgsqlConnectionStringBuilder(ConnectionString) { MaxPoolSize = PrimaryPool }.ConnectionString)
        .UseSetting("Exports:MaxConnections", ExportPool.ToString())
        .UseSetting("Exports:MaxPerKey", PerKey.ToString())
        .UseSetting("Exports:MaxPerMerchant", PerMerchant.ToString())
        .UseSetting("Exports:StallSeconds", StallSeconds.ToString());

    public Uri BaseUrl
    {
        get
        {
            StartServer();
            var address = Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
            return new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("localhost", "127.0.0.1", StringComparison.Ordinal));
        }
    }

    public HttpClient Http(string key) => new()
    {
        BaseAddress = BaseUrl,
        DefaultRequestHeaders = { Authorization = new AuthenticationHeaderValue("Bearer", key) },
        Timeout = TimeSpan.FromSeconds(60),
    };
}

/// <summary>Many slow readers of exports hold the export pool and the per-key caps; another merchant never notices.</summary>
public class SlowExportReadersTests(SlowExportApp app) : IClassFixture<SlowExportApp>, IAsyncLifetime
{
    public Task InitializeAsync() => app.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    /// <summary>A raw HTTP client that reads a few bytes a second, with a small receive window.</summary>
    private sealed class SlowReader : IDisposable
    {
        private readonly TcpClient _client = new() { ReceiveBufferSize = 2048 };
        private readonly StringBuilder _head = new();
        private int _received;

        public Task Reading { get; private set; } = Task.CompletedTask;

        public int Received => Volatile.Read(ref _received);

        /// <summary>From now on, reads as fast as it can: what the server still sends arrives at once.</summary>
        public bool Drain { get; set; }

        public string Head { get { lock (_head) return _head.ToString(); } }

        public async Task StartAsync(Uri baseUrl, string path, string key)
        {
            await _client.ConnectAsync(baseUrl.Host, baseUrl.Port);
            var stream = _client.GetStream();
            await stream.WriteAsync(Encoding.ASCII.GetBytes(
                $"GET {path} HTTP/1.1\r\nHost: {baseUrl.Authority}\r\nAuthorization: Bearer {key}\r\n\r\n"));
            Reading = Task.Run(async () =>
            {
                var buffer = new byte[65536];
                try
                {
                    while (true)
                    {
                        var n = await stream.ReadAsync(buffer.AsMemory(0, Drain ? buffer.Length : 8));
                        if (n == 0) return;
                        if (Interlocked.Add(ref _received, n) <= 64) lock (_head) _head.Append(Encoding.ASCII.GetString(buffer, 0, n));
                        if (!Drain) await Task.Delay(500);
                    }
                }
                catch (IOException) { }
            });
        }

        public void Dispose() => _client.Dispose();
    }

    private static async Task WaitForAsync(Func<bool> condition, TimeSpan limit, string what)
    {
        var until = DateTime.UtcNow + limit;
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < until, what);
            await Task.Delay(100);
        }
    }

    [Fact]
    public async Task SlowExportReadersOfOneMerchantNeverSlowAnotherMerchantsReportsAndReadsAndAreCutWhenTheyStall()
    {
        // Merchant A: enough report rows (about 30 MB of CSV) that no socket buffer holds its export.
        var a = await app.NewMerchantAsync("A");
        var aCustomer = await app.CustomerAsync(a.MerchantId);
        await app.MeterAsync(a.MerchantId, "tok", "fixed", "tokens_1m", (0, 5m));
        await a.ReportAsync("seed", aCustomer, "tok");
        await using (var c = new NpgsqlConnection(app.ConnectionString))
        {
            await c.ExecuteAsync("""
                INSERT INTO requests (merchant_id, request_id, fingerprint, mode, customer_id, meter_id, price_version, input_tokens,
                                      output_tokens, input_characters, output_characters, input_seconds, output_seconds, cost,
                                      charge_amount, metadata, occurred_at, created_at, transaction_id, status_code, response)
                SELECT merchant_id, request_id || '_' || n, fingerprint, mode, customer_id, meter_id, price_version, input_tokens,
                       output_tokens, input_characters, output_characters, input_seconds, output_seconds, cost,
                       charge_amount, jsonb_build_object('pad', repeat('x', 600)), occurred_at, created_at, transaction_id, status_code, response
                  FROM requests, generate_series(1, 40000) AS n
                 WHERE merchant_id = @m AND request_id = 'seed'
                """, new { m = a.MerchantId }, commandTimeout: 120);
        }
        var keys = new List<string>();
        for (var i = 0; i < SlowExportApp.PerMerchant / SlowExportApp.PerKey; i++) keys.Add(await a.ReadOnlyKeyAsync());
        var anotherKey = await a.ReadOnlyKeyAsync();

        var b = await app.NewMerchantAsync("B");
        var bCustomer = await app.CustomerAsync(b.MerchantId);
        await app.MeterAsync(b.MerchantId, "tok", "fixed", "tokens_1m", (0, 5m));
        await app.GrantAsync(b.MerchantId, bCustomer, 100m);
        using var bClient = app.Http(b.SecretKey);

        // Every key of A at its cap, and A at its own: four of the export pool's six connections.
        var readers = keys.SelectMany(k => Enumerable.Range(0, SlowExportApp.PerKey).Select(_ => (Key: k, Reader: new SlowReader()))).ToList();
        try
        {
            var started = Stopwatch.StartNew();
            foreach (var (key, reader) in readers) await reader.StartAsync(app.BaseUrl, "/v1/requests?format=csv", key);
            await WaitForAsync(() => readers.All(r => r.Reader.Head.Length >= 12), TimeSpan.FromSeconds(30), "some exports never started");
            Assert.All(readers, r => Assert.StartsWith("HTTP/1.1 200", r.Reader.Head));

            // A's further exports, on either route and with any key (one that runs none too), are refused at once.
            foreach (var key in keys.Append(anotherKey))
            {
                using var client = app.Http(key);
                foreach (var path in new[] { "/v1/requests?format=csv", "/v1/ledger/entries?format=csv" })
                {
                    using var refused = await client.GetAsync(path, HttpCompletionOption.ResponseHeadersRead);
                    Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
                    Assert.Equal(TimeSpan.FromSeconds(5), refused.Headers.RetryAfter?.Delta);
                }
            }

            // B's own export streams beside A's four (the cap on A itself is what the refusal of A's spare key above shows).
            using (var bExport = await bClient.GetAsync("/v1/requests?format=csv", HttpCompletionOption.ResponseHeadersRead))
                Assert.Equal(HttpStatusCode.OK, bExport.StatusCode);

            // Meanwhile B reports and reads its balance, four at a time: every call succeeds, none waits for a connection.
            var slowest = TimeSpan.Zero;
            await Parallel.ForEachAsync(Enumerable.Range(0, 40), new ParallelOptions { MaxDegreeOfParallelism = 4 }, async (i, _) =>
            {
                var watch = Stopwatch.StartNew();
                var r = i % 2 == 0
                    ? await bClient.PostJsonAsync("/v1/requests", new { request_id = $"b{i}", customer_id = bCustomer, meter_slug = "tok", input_tokens = 1000 })
                    : await bClient.GetJsonAsync($"/v1/customers/{bCustomer}/balance");
                Assert.True(r.Status is HttpStatusCode.Created or HttpStatusCode.OK, $"call {i}: {(int)r.Status} {r.Body?.ToJsonString()}");
                lock (readers) slowest = watch.Elapsed > slowest ? watch.Elapsed : slowest;
            });
            // Bounded generously for a loaded machine; a call waiting on a shared pool waits out the stall limit.
            Assert.True(slowest < TimeSpan.FromSeconds(5), $"B's slowest call took {slowest}");
            Assert.Equal(20L, await app.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", new { m = b.MerchantId }));

            // All that while, every reader still held its export, having taken a sliver of it.
            Assert.True(started.Elapsed < TimeSpan.FromSeconds(SlowExportApp.StallSeconds), $"B's calls ended only after {started.Elapsed}");
            Assert.All(readers, r => Assert.False(r.Reader.Reading.IsCompleted));

            // Stalled, each export is cut: its query ends and its connection goes back to the export pool; a client that
            // then reads as fast as it can gets only what was already on its way, not the rest of the export.
            var exporting = "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'lava-billing-export' AND state <> 'idle'";
            var until = DateTime.UtcNow.AddSeconds(SlowExportApp.StallSeconds + 45);
            while (await app.QueryAsync<long>(exporting) > 0)
            {
                Assert.True(DateTime.UtcNow < until, "a stalled export was never cut");
                await Task.Delay(200);
            }
            foreach (var (_, reader) in readers) reader.Drain = true;
            await WaitForAsync(() => readers.All(r => r.Reader.Reading.IsCompleted), TimeSpan.FromSeconds(30), "a cut export's connection stayed open");
            Assert.All(readers, r => Assert.True(r.Reader.Received < 2_000_000, $"a reader took {r.Reader.Received} bytes of a cut export"));
        }
        finally
        {
            foreach (var (_, reader) in readers) reader.Dispose();
        }
    }
}
