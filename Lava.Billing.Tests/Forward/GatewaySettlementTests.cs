using System.Net;
using System.Net.Sockets;
using System.Text;
using Dapper;
using Lava.Billing.Forward;
using Lava.Billing.Infrastructure;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Forward;

/// <summary>A served gateway call is always billed: through a failing database, a crash, bad keys and absurd provider usage.</summary>
/// <summary>
/// The gateway with a provider timeout long enough that a test can look at a stream while it waits, a raw provider
/// that answers bytes no HTTP server library would write, and billing that can be made to fail once, as a bug would.
/// </summary>
public sealed class SettlementGatewayApp : GatewayApp
{
    public RawProvider Raw { get; } = new();
    public FailingOnce Failing { get; } = new();

    protected override IEnumerable<(string Key, string Value)> Settings() =>
        [.. base.Settings(), ("Forward:TimeoutsMs:127.0.0.1", "10000"), ("Forward:AllowedUpstreams:3", Raw.BaseUrl + "/v1")];

    protected override void ConfigureTestServices(IWebHostBuilder builder)
    {
        base.ConfigureTestServices(builder);
        builder.ConfigureServices(services => services.AddSingleton<IForwardBilling>(sp =>
            Failing.Wrap(sp.GetRequiredService<ForwardBilling>())));
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        Raw.Dispose();
    }
}

/// <summary>Gateway billing whose next <see cref="IForwardBilling.ServeAsync"/> throws when armed: an unforeseen failure after the provider answered.</summary>
public sealed class FailingOnce
{
    private int _armed;

    public void Arm() => Interlocked.Exchange(ref _armed, 1);

    public IForwardBilling Wrap(IForwardBilling inner) => new Billing(this, inner);

    private sealed class Billing(FailingOnce owner, IForwardBilling inner) : IForwardBilling
    {
        public Task<ForwardAdmission> BeforeAsync(ForwardCall call, UsageEstimate estimate, BilledUsage initial, CancellationToken ct) =>
            inner.BeforeAsync(call, estimate, initial, ct);
        public Task ProgressAsync(ForwardCall call, BilledUsage seen, CancellationToken ct) => inner.ProgressAsync(call, seen, ct);
        public Task<ForwardCallRecord?> ServeAsync(ForwardCall call, BilledUsage usage, string? anomaly, CancellationToken ct) =>
            Interlocked.Exchange(ref owner._armed, 0) == 1 ? throw new InvalidOperationException("injected bug") : inner.ServeAsync(call, usage, anomaly, ct);
        public Task ReleaseAsync(ForwardCall call, CancellationToken ct) => inner.ReleaseAsync(call, ct);
    }
}

/// <summary>A provider on a loopback port that answers every request with the bytes it was given.</summary>
public sealed class RawProvider : IDisposable
{
    private readonly TcpListener _listener = new(IPAddress.Loopback, 0);

    public byte[] Answer { get; set; } = [];
    public string BaseUrl { get; }

    public RawProvider()
    {
        _listener.Start();
        BaseUrl = "http://127.0.0.1:" + ((IPEndPoint)_listener.LocalEndpoint).Port;
        _ = AcceptAsync();
    }

    private async Task AcceptAsync()
    {
        while (true)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync();
            }
            catch (Exception)
            {
                return;
            }
            using (client)
            {
                var stream = client.GetStream();
                var request = new List<byte>();
                var buffer = new byte[4096];
                // Headers, then the body its Content-Length announces.
                while (true)
                {
                    var read = await stream.ReadAsync(buffer);
                    if (read == 0) break;
                    request.AddRange(buffer.AsSpan(0, read).ToArray());
                    var text = Encoding.ASCII.GetString(request.ToArray());
                    var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                    if (end < 0) continue;
                    var length = text.Split("\r\n").Select(l => l.Split(':', 2)).Where(p => p.Length == 2 && p[0].Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
                        .Select(p => int.Parse(p[1].Trim(), System.Globalization.CultureInfo.InvariantCulture)).FirstOrDefault();
                    if (request.Count >= end + 4 + length) break;
                }
                await stream.WriteAsync(Answer);
            }
        }
    }

    public void Dispose() => _listener.Stop();
}

public class GatewaySettlementTests(SettlementGatewayApp app) : GatewayTest<SettlementGatewayApp>(app)
{
    private static HttpContent Chat(bool stream = false) => Http.Json(stream
        ? """{"model":"gpt-4o","max_tokens":1000,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}"""
        : """{"model":"gpt-4o","max_tokens":1000,"messages":[{"role":"user","content":"Say hello"}]}""");

    private async Task<(LavaApp.Merchant M, string Customer)> CustomerWithCreditsAsync(decimal credits = 1m)
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "chat", "fixed", "tokens_1m", (0, 5m));
        await App.GrantAsync(m.MerchantId, customer, credits);
        return (m, customer);
    }

    private async Task WaitForAsync(string sql, object args, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(15);
        while (!await App.QueryAsync<bool>(sql, args))
        {
            Assert.True(DateTime.UtcNow < deadline, what + "\n" + string.Join("\n", App.Logs.Lines.Where(l => !l.StartsWith("Trace") && !l.StartsWith("Debug")).TakeLast(40)));
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task APostingThatFailsAfterTheProviderAnsweredIsRetriedUntilPostedAndTheHoldIsCapturedNeverVoided()
    {
        var (m, customer) = await CustomerWithCreditsAsync();
        // The usage report's insert fails once for this merchant (a sequence counts across rolled-back transactions).
        await using var fault = await App.InjectFaultAsync("fail_once_" + m.MerchantId.ToLowerInvariant(), "requests", "INSERT",
            $"NEW.merchant_id = '{m.MerchantId}'", once: true);
        var r = await App.ClientWithToken(m.SecretKey, customer, "chat").PostAsync(App.Forward("/v1/chat/completions"), Chat());
        await r.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var args = new { m = m.MerchantId, r = r.Headers.GetValues("x-lava-request-id").Single() };
        await WaitForAsync("SELECT EXISTS (SELECT 1 FROM forward_calls WHERE merchant_id = @m AND request_id = @r AND state = 'posted')", args,
            "the call was never posted");
        Assert.True(await fault.FiredAsync(), "the fault was never injected");
        Assert.True(await App.QueryAsync<int>("SELECT attempts FROM forward_calls WHERE merchant_id = @m AND request_id = @r", args) >= 1);
        // The provider's own count (1,200 + 300 tokens at 5 per 1M), not an estimate, and the hold captured for it.
        Assert.Equal((1200L, 300L, 0.0075m, "{}"), await App.QueryAsync<(long, long, decimal, string)>(
            "SELECT input_tokens, output_tokens, charge_amount, metadata::text FROM requests WHERE merchant_id = @m AND request_id = @r", args));
        Assert.Equal(("captured", args.r), await App.QueryAsync<(string, string)>(
            "SELECT status, request_id FROM holds WHERE merchant_id = @m", args));
        var balance = await m.Client.GetJsonAsync($"/v1/customers/{customer}/balance");
        Assert.Equal("0.9925000000", (string)balance.Body!["available"]!);
    }

    [Fact]
    public async Task UsageThatCannotBeWrittenWhenTheCallEndsIsKeptAndBilledExactlyOnceTheDatabaseAnswers()
    {
        var (m, customer) = await CustomerWithCreditsAsync();
        // Writing the call's usage fails once for this merchant, as it would while the database is away.
        await using var fault = await App.InjectFaultAsync("fail_served_" + m.MerchantId.ToLowerInvariant(), "forward_calls", "UPDATE",
            $"NEW.merchant_id = '{m.MerchantId}' AND NEW.state = 'served'", once: true);
        var r = await App.ClientWithToken(m.SecretKey, customer, "chat").PostAsync(App.Forward("/v1/chat/completions"), Chat(stream: true));
        await r.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var args = new { m = m.MerchantId, r = r.Headers.GetValues("x-lava-request-id").Single() };
        await WaitForAsync("SELECT EXISTS (SELECT 1 FROM forward_calls WHERE merchant_id = @m AND request_id = @r AND state = 'posted')", args,
            "the call was never posted");
        Assert.True(await fault.FiredAsync(), "the fault was never injected");
        // The provider's own count, not the crash rule's estimate.
        Assert.Equal((1200L, 300L, "{}"), await App.QueryAsync<(long, long, string)>(
            "SELECT input_tokens, output_tokens, metadata::text FROM requests WHERE merchant_id = @m AND request_id = @r", args));
        Assert.Equal("captured", await App.QueryAsync<string>("SELECT status FROM holds WHERE merchant_id = @m", args));
    }

    [Fact]
    public async Task KeptUsageOneMerchantCanNeverWriteDoesNotHoldBackAnotherMerchantsKeptUsage()
    {
        var (a, aCustomer) = await CustomerWithCreditsAsync();
        var (b, bCustomer) = await CustomerWithCreditsAsync();
        // A's usage can never be written (a fault of its own, not the database being away); B's fails once. Both are kept
        // in memory, A's first, for the settle worker.
        await using var always = await App.InjectFaultAsync("fail_always_" + a.MerchantId.ToLowerInvariant(), "forward_calls", "UPDATE",
            $"NEW.merchant_id = '{a.MerchantId}' AND NEW.state = 'served'", once: false);
        await using var once = await App.InjectFaultAsync("fail_served_" + b.MerchantId.ToLowerInvariant(), "forward_calls", "UPDATE",
            $"NEW.merchant_id = '{b.MerchantId}' AND NEW.state = 'served'", once: true);
        var ra = await App.ClientWithToken(a.SecretKey, aCustomer, "chat").PostAsync(App.Forward("/v1/chat/completions"), Chat());
        await ra.Content.ReadAsStringAsync();
        var rb = await App.ClientWithToken(b.SecretKey, bCustomer, "chat").PostAsync(App.Forward("/v1/chat/completions"), Chat());
        await rb.Content.ReadAsStringAsync();
        Assert.Equal((HttpStatusCode.OK, HttpStatusCode.OK), (ra.StatusCode, rb.StatusCode));

        var bArgs = new { m = b.MerchantId, r = rb.Headers.GetValues("x-lava-request-id").Single() };
        await WaitForAsync("SELECT EXISTS (SELECT 1 FROM forward_calls WHERE merchant_id = @m AND request_id = @r AND state = 'posted')", bArgs,
            "another merchant's kept usage waited behind one that can never be written");
        Assert.Equal((1200L, 300L), await App.QueryAsync<(long, long)>(
            "SELECT input_tokens, output_tokens FROM requests WHERE merchant_id = @m AND request_id = @r", bArgs));
        Assert.Equal("pending", await App.QueryAsync<string>("SELECT state FROM forward_calls WHERE merchant_id = @m",
            new { m = a.MerchantId }));
    }

    [Fact]
    public async Task AFailedCallWhoseReleaseCannotBeWrittenIsReleasedLaterNotBilled()
    {
        var (m, customer) = await CustomerWithCreditsAsync();
        Fake.Next.Enqueue(http => FakeProvider.Json(http, """{"error":{"message":"boom"}}""", 500));
        // Releasing the call fails once for this merchant, as it would while the database is away.
        await using var fault = await App.InjectFaultAsync("fail_release_" + m.MerchantId.ToLowerInvariant(), "forward_calls", "UPDATE",
            $"NEW.merchant_id = '{m.MerchantId}' AND NEW.state = 'released'", once: true);
        var r = await App.ClientWithToken(m.SecretKey, customer, "chat").PostAsync(App.Forward("/v1/chat/completions"), Chat());
        await r.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.InternalServerError, r.StatusCode);
        var args = new { m = m.MerchantId, r = r.Headers.GetValues("x-lava-request-id").Single() };
        await WaitForAsync("SELECT EXISTS (SELECT 1 FROM forward_calls WHERE merchant_id = @m AND request_id = @r AND state = 'released')", args,
            "the call was never released");
        Assert.True(await fault.FiredAsync(), "the fault was never injected");
        Assert.Equal("voided", await App.QueryAsync<string>("SELECT status FROM holds WHERE merchant_id = @m", args));
        Assert.Equal(0L, await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", args));
    }

    [Fact]
    public async Task ACallLeftPendingByACrashIsBilledItsLastRecordedUsageFlaggedAndItsHoldCaptured()
    {
        var (m, customer) = await CustomerWithCreditsAsync();
        var holdId = Ids.New("hld");
        var requestId = Ids.New("req");
        // What a process killed mid-stream leaves: an active hold and a pending record with the usage seen so far,
        // whose deadline passed without news.
        await using (var c = new NpgsqlConnection(App.ConnectionString))
        {
            await c.ExecuteAsync("""
                INSERT INTO holds (merchant_id, hold_id, customer_id, amount, status, expires_at, created_at)
                VALUES (@m, @hold, @customer, 0.5, 'active', now() + interval '1 hour', now() - interval '5 minutes');
                INSERT INTO forward_calls (merchant_id, request_id, state, mode, customer_id, meter_slug, hold_id, call,
                                           input_uncached, output_tokens, estimated, next_attempt_at, created_at, updated_at)
                VALUES (@m, @r, 'pending', 'customer', @customer, 'chat', @hold,
                        '{"provider":"api.openai.com","provider_key_type":"managed","model":"gpt-4o","endpoint":"/v1/chat/completions",
                          "upstream":"https://api.openai.com/v1/chat/completions","model_price_version":null,"metadata":{"team":"a"}}',
                        1000, 200, true, now() - interval '1 second', now() - interval '5 minutes', now() - interval '4 minutes');
                """, new { m = m.MerchantId, hold = holdId, customer, r = requestId });
        }

        var args = new { m = m.MerchantId, r = requestId };
        await WaitForAsync("SELECT EXISTS (SELECT 1 FROM forward_calls WHERE merchant_id = @m AND request_id = @r AND state = 'posted')", args,
            "the crashed call was never settled");
        Assert.Equal((1000L, 200L, 0.006m, """{"team": "a", "estimated": "true", "gateway_anomaly": "recovered_after_crash"}"""),
            await App.QueryAsync<(long, long, decimal, string)>(
                "SELECT input_tokens, output_tokens, charge_amount, metadata::text FROM requests WHERE merchant_id = @m AND request_id = @r", args));
        Assert.Equal(("captured", 0.006m), await App.QueryAsync<(string, decimal)>(
            "SELECT status, captured_amount FROM holds WHERE merchant_id = @m", args));
        Assert.Equal("recovered_after_crash", await App.QueryAsync<string>(
            "SELECT anomaly FROM forward_calls WHERE merchant_id = @m AND request_id = @r", args));
    }

    // The race: one attempt (the settle worker, the hold having lapsed) posted the call without its hold, but its close of
    // the record was not written yet; a slower attempt (the proxy's own posting, begun before) then sends the version
    // with the hold. hold_id is part of the report's fingerprint, so that version meets 409 idempotency_conflict, which
    // must lead to the hold-less repost taken as a replay — not to a refusal of a call whose usage is in the ledger.
    [Fact]
    public async Task APostingThatMeetsTheCallAlreadyPostedWithoutItsLapsedHoldIsTakenAsPostedNotRefused()
    {
        var (m, customer) = await CustomerWithCreditsAsync();
        var holdId = Ids.New("hld");
        var requestId = Ids.New("req");
        var args = new { m = m.MerchantId, r = requestId, hold = holdId, customer };
        // A served call whose hold's hour has run out; due only tomorrow, so the service's settle worker stays out of it.
        await using (var c = new NpgsqlConnection(App.ConnectionString))
        {
            await c.ExecuteAsync("""
                INSERT INTO holds (merchant_id, hold_id, customer_id, amount, status, expires_at, created_at)
                VALUES (@m, @hold, @customer, 0.5, 'active', now() - interval '1 minute', now() - interval '61 minutes');
                INSERT INTO forward_calls (merchant_id, request_id, state, mode, customer_id, meter_slug, hold_id, call,
                                           input_uncached, output_tokens, estimated, served_at, next_attempt_at, created_at, updated_at)
                VALUES (@m, @r, 'served', 'customer', @customer, 'chat', @hold, '{}', 1000, 200, false,
                        now() - interval '2 minutes', now() + interval '1 day', now() - interval '62 minutes', now() - interval '2 minutes');
                """, args);
        }
        var servedAt = await App.QueryAsync<DateTime>("SELECT served_at FROM forward_calls WHERE merchant_id = @m AND request_id = @r", args);
        var record = new ForwardCallRecord(m.MerchantId, requestId, ForwardMode.Customer, customer, "chat", holdId,
            new ForwardCallDetails("api.openai.com", "managed", "gpt-4o", "/v1/chat/completions", "https://api.openai.com/v1/chat/completions",
                null, []),
            new BilledUsage(new NormalizedUsage(1000, 0, 0, 200, 0), null, false), null,
            new DateTimeOffset(DateTime.SpecifyKind(servedAt, DateTimeKind.Utc)), 1);
        var billing = App.Services.GetRequiredService<ForwardBilling>();

        // The first attempt: refused the lapsed hold, it posts without it; then its close of the record fails.
        await using (var fault = await App.InjectFaultAsync("fail_close_" + m.MerchantId.ToLowerInvariant(), "forward_calls", "UPDATE",
                         $"NEW.merchant_id = '{m.MerchantId}' AND NEW.state = 'posted'", once: true))
        {
            await billing.SettleAsync(record, CancellationToken.None);
        }
        await App.QueryAsync<int>("UPDATE forward_calls SET next_attempt_at = now() + interval '1 day' WHERE merchant_id = @m AND request_id = @r RETURNING 1", args);
        Assert.Equal(("served", "active"), await App.QueryAsync<(string, string)>(
            "SELECT f.state, h.status FROM forward_calls f JOIN holds h ON h.merchant_id = f.merchant_id AND h.hold_id = f.hold_id WHERE f.merchant_id = @m AND f.request_id = @r", args));
        Assert.Equal(1L, await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m AND request_id = @r AND hold_id IS NULL", args));

        // The slower attempt, with the hold.
        await billing.SettleAsync(record, CancellationToken.None);

        Assert.Equal(("posted", "voided"), await App.QueryAsync<(string, string)>(
            "SELECT f.state, h.status FROM forward_calls f JOIN holds h ON h.merchant_id = f.merchant_id AND h.hold_id = f.hold_id WHERE f.merchant_id = @m AND f.request_id = @r", args));
        Assert.Equal((1L, 0.006m), await App.QueryAsync<(long, decimal)>(
            "SELECT count(*), sum(charge_amount) FROM requests WHERE merchant_id = @m", args));
        Assert.DoesNotContain(App.Logs.Lines, l => l.Contains(requestId) && l.Contains("was refused"));
    }

    [Fact]
    public async Task ACallStillRunningIsNotTakenForACrashedOne()
    {
        var (m, customer) = await CustomerWithCreditsAsync();
        Fake.HoldAfterEvents = 2;
        var request = new HttpRequestMessage(HttpMethod.Post, App.Forward("/v1/chat/completions")) { Content = Chat(stream: true) };

        var r = await App.ClientWithToken(m.SecretKey, customer, "chat").SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var args = new { m = m.MerchantId, r = r.Headers.GetValues("x-lava-request-id").Single() };
        // Several rounds of the settle worker go by while the stream waits.
        await Task.Delay(600);

        Assert.Equal("pending", await App.QueryAsync<string>("SELECT state FROM forward_calls WHERE merchant_id = @m AND request_id = @r", args));
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", args));
        Fake.Release.TrySetResult();
        await r.Content.ReadAsStringAsync();
        await WaitForAsync("SELECT EXISTS (SELECT 1 FROM requests WHERE merchant_id = @m AND request_id = @r)", args, "never billed");
        Assert.Equal((1200L, 300L), await App.QueryAsync<(long, long)>(
            "SELECT input_tokens, output_tokens FROM requests WHERE merchant_id = @m AND request_id = @r", args));
    }

    [Fact]
    public async Task ABodyThatIsNotAnEventStreamKeepsItsCallAliveWhileItFlows()
    {
        var (m, customer) = await CustomerWithCreditsAsync();
        // A JSON body that keeps arriving (as a provider streaming a JSON array does): a chunk every 150 ms, longer than
        // the progress interval (100 ms), its usage only at the end.
        var flowing = new TaskCompletionSource();
        Fake.Next.Enqueue(async http =>
        {
            http.Response.ContentType = "application/json";
            await http.Response.WriteAsync("{\"id\":\"c1\",\"object\":\"chat.completion\",\"model\":\"gpt-4o\",\"pad\":\"");
            for (var i = 0; i < 8; i++)
            {
                await http.Response.WriteAsync("xxxxxxxx");
                await http.Response.Body.FlushAsync();
                await Task.Delay(150);
            }
            await flowing.Task.WaitAsync(TimeSpan.FromSeconds(10));
            await http.Response.WriteAsync("\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]," +
                "\"usage\":{\"prompt_tokens\":1200,\"completion_tokens\":300,\"total_tokens\":1500}}");
        });
        var request = new HttpRequestMessage(HttpMethod.Post, App.Forward("/v1/chat/completions")) { Content = Chat() };

        var r = await App.ClientWithToken(m.SecretKey, customer, "chat").SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var args = new { m = m.MerchantId, r = r.Headers.GetValues("x-lava-request-id").Single() };
        var admitted = await App.QueryAsync<DateTime>("SELECT next_attempt_at FROM forward_calls WHERE merchant_id = @m AND request_id = @r", args);

        // Progress notes move the call's deadline on while its body flows, so the settle worker never takes it for a
        // crashed call (which it would bill the prompt's estimate, flagged, and drop the provider's count).
        await WaitForAsync("SELECT state = 'pending' AND next_attempt_at > @admitted FROM forward_calls WHERE merchant_id = @m AND request_id = @r",
            new { args.m, args.r, admitted }, "the flowing body's call was never noted alive");
        flowing.SetResult();
        await r.Content.ReadAsStringAsync();
        Assert.Equal(("posted", 1200L, 300L, (string?)null), await App.QueryAsync<(string, long, long, string?)>(
            "SELECT state, input_uncached, output_tokens, anomaly FROM forward_calls WHERE merchant_id = @m AND request_id = @r", args));
    }

    [Fact]
    public async Task AStreamRecordsTheUsageItHasShownSoFarWhileItRuns()
    {
        var (m, customer) = await CustomerWithCreditsAsync();
        Fake.HoldAfterEvents = 3; // role, "Hello", " world": the usage chunk has not come yet
        Fake.EventDelay = TimeSpan.FromMilliseconds(150); // longer than the progress interval (100 ms)
        var request = new HttpRequestMessage(HttpMethod.Post, App.Forward("/v1/chat/completions")) { Content = Chat(stream: true) };

        var r = await App.ClientWithToken(m.SecretKey, customer, "chat").SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        var args = new { m = m.MerchantId, r = r.Headers.GetValues("x-lava-request-id").Single() };

        // " world" came after the first progress note: wait for a note that has seen all 11 characters (3 tokens).
        await WaitForAsync("SELECT state = 'pending' AND output_tokens = 3 FROM forward_calls WHERE merchant_id = @m AND request_id = @r", args,
            "the stream's progress was never recorded");
        Fake.Release.TrySetResult();
        await r.Content.ReadAsStringAsync();
        Assert.Equal(("posted", 300L), await App.QueryAsync<(string, long)>(
            "SELECT state, output_tokens FROM forward_calls WHERE merchant_id = @m AND request_id = @r", args));
    }

    [Fact]
    public async Task AStreamsFinalUsageIsOnRecordBeforeTheClientSeesTheEndOfTheStream()
    {
        var (m, customer) = await CustomerWithCreditsAsync();
        // Posting takes a second for this merchant, so the client reaches [DONE] while its report is still being written.
        var name = "slow_" + m.MerchantId.ToLowerInvariant();
        await App.ExecuteAsAdminAsync($"""
            CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.merchant_id = '{m.MerchantId}' THEN PERFORM pg_sleep(1); END IF;
                RETURN NEW;
            END $$;
            CREATE TRIGGER {name} BEFORE INSERT ON requests FOR EACH ROW EXECUTE FUNCTION {name}();
            """);
        try
        {
            var request = new HttpRequestMessage(HttpMethod.Post, App.Forward("/v1/chat/completions")) { Content = Chat(stream: true) };
            var r = await App.ClientWithToken(m.SecretKey, customer, "chat").SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            var args = new { m = m.MerchantId, r = r.Headers.GetValues("x-lava-request-id").Single() };
            var body = await r.Content.ReadAsStreamAsync();
            var seen = new StringBuilder();
            var buffer = new byte[1024];
            while (!seen.ToString().Contains("[DONE]"))
            {
                var read = await body.ReadAsync(buffer).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
                Assert.True(read > 0, "the stream ended without [DONE]");
                seen.Append(Encoding.UTF8.GetString(buffer, 0, read));
            }

            // Killed now, the process would leave a call whose exact usage is on disk, posted by the settle worker.
            Assert.Equal(("served", 1200L, 300L, false), await App.QueryAsync<(string, long, long, bool)>(
                "SELECT state, input_uncached + cache_read, output_tokens, estimated FROM forward_calls WHERE merchant_id = @m AND request_id = @r", args));
            await body.CopyToAsync(Stream.Null);
        }
        finally
        {
            await App.ExecuteAsAdminAsync($"DROP TRIGGER {name} ON requests; DROP FUNCTION {name}();");
        }
    }

    [Fact]
    public async Task TheUsageIsOnRecordBeforeTheClientHasTheWholeAnswer()
    {
        var (m, customer) = await CustomerWithCreditsAsync();
        var client = App.ClientWithToken(m.SecretKey, customer, "chat");

        foreach (var stream in new[] { false, true })
        {
            var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat(stream));
            await r.Content.ReadAsStringAsync();

            // Whatever happens to the process from here, the provider's count is what gets billed.
            var args = new { m = m.MerchantId, r = r.Headers.GetValues("x-lava-request-id").Single() };
            Assert.Equal((false, 1200L, 300L), await App.QueryAsync<(bool, long, long)>(
                "SELECT state = 'pending', input_uncached + cache_read + cache_write, output_tokens FROM forward_calls WHERE merchant_id = @m AND request_id = @r",
                args));
        }
    }

    [Fact]
    public async Task AnUnforeseenFailureAfterTheProviderAnsweredStillBillsTheCallAndCapturesItsHold()
    {
        var (m, customer) = await CustomerWithCreditsAsync();
        App.Failing.Arm();
        var request = new HttpRequestMessage(HttpMethod.Post, App.Forward("/v1/chat/completions")) { Content = Chat(stream: true) };

        var r = await App.ClientWithToken(m.SecretKey, customer, "chat").SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        // The failure breaks the stream off: the client must not take it for a whole answer.
        await Assert.ThrowsAnyAsync<Exception>(() => r.Content.ReadAsStringAsync());

        var args = new { m = m.MerchantId, r = r.Headers.GetValues("x-lava-request-id").Single() };
        await WaitForAsync("SELECT EXISTS (SELECT 1 FROM forward_calls WHERE merchant_id = @m AND request_id = @r AND state = 'posted')", args,
            "the call was never posted");
        Assert.Equal("captured", await App.QueryAsync<string>("SELECT status FROM holds WHERE merchant_id = @m", args));
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", args));
    }

    [Fact]
    public async Task AnUnforeseenFailureAfterTheProviderAnsweredButBeforeAnyByteWasRelayedStillBillsTheCall()
    {
        // A whole (not streamed) answer is held back until its usage is written, so the injected failure comes before the
        // client has any of it; the provider did the work all the same.
        var (m, customer) = await CustomerWithCreditsAsync();
        App.Failing.Arm();

        var r = await App.ClientWithToken(m.SecretKey, customer, "chat").PostAsync(App.Forward("/v1/chat/completions"), Chat());

        Assert.Equal(HttpStatusCode.InternalServerError, r.StatusCode);
        var args = new { m = m.MerchantId };
        await WaitForAsync("SELECT EXISTS (SELECT 1 FROM forward_calls WHERE merchant_id = @m AND state = 'posted')", args,
            "the call was never posted");
        Assert.Equal("captured", await App.QueryAsync<string>("SELECT status FROM holds WHERE merchant_id = @m", args));
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", args));
    }

    [Fact]
    public async Task AProviderHeaderOurServerCannotSendIsDroppedAndTheCallIsBilledAsUsual()
    {
        var (m, customer) = await CustomerWithCreditsAsync();
        var body = """{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":1200,"completion_tokens":300}}""";
        App.Raw.Answer = [.. Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Note: caf"), 0xE9,
            .. Encoding.ASCII.GetBytes($"\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n{body}")];

        var r = await App.ClientWithToken(m.SecretKey, customer, "chat")
            .PostAsync("/v1/forward?u=" + Uri.EscapeDataString(App.Raw.BaseUrl + "/v1/chat/completions"), Chat());

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        Assert.Equal(body, await r.Content.ReadAsStringAsync());
        Assert.False(r.Headers.Contains("X-Note"));
        var args = new { m = m.MerchantId, r = r.Headers.GetValues("x-lava-request-id").Single() };
        Assert.Equal((1200L, 300L), await App.QueryAsync<(long, long)>(
            "SELECT input_tokens, output_tokens FROM requests WHERE merchant_id = @m AND request_id = @r", args));
        Assert.Equal("captured", await App.QueryAsync<string>("SELECT status FROM holds WHERE merchant_id = @m", args));
    }

    public static TheoryData<string> BadProviderKeys => new() { "sk-abc\r\nx-injected: 1", "sk-abc\nx", "sk-abc\r", "sk abc", "sk-\u00e9", "" };

    [Theory]
    [MemberData(nameof(BadProviderKeys))]
    public async Task AProviderKeyThatIsNotAValidHeaderValueIsRefusedWith400BeforeAnythingIsHeld(string providerKey)
    {
        var (m, customer) = await CustomerWithCreditsAsync();

        var r = await App.ClientWithToken(m.SecretKey, customer, "chat", providerKey: providerKey)
            .SendAsync(HttpMethod.Post, App.Forward("/v1/chat/completions"), Chat());

        r.AssertProblem(HttpStatusCode.BadRequest, "invalid_provider_key");
        Assert.Equal(0, Fake.Calls);
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM holds WHERE merchant_id = @m", new { m = m.MerchantId }));
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM forward_calls WHERE merchant_id = @m", new { m = m.MerchantId }));
    }

    [Fact]
    public async Task AProviderKeyNeverReachesTheLogs()
    {
        var m = await App.NewMerchantAsync();
        const string key = "sk-caller-secret-0123456789";
        Fake.Next.Enqueue(http => FakeProvider.Json(http, """{"error":{"message":"boom"}}""", 500));

        var r = await App.ClientWithToken(m.SecretKey, providerKey: key).PostAsync(App.Forward("/v1/chat/completions"), Chat());
        await r.Content.ReadAsStringAsync();
        await App.ClientWithToken(m.SecretKey, providerKey: key).PostAsync(
            "/v1/forward?u=" + Uri.EscapeDataString(App.ClosedUpstream + "/v1/chat/completions"), Chat());

        Assert.Equal(2, await App.QueryAsync<long>("SELECT count(*) FROM forward_calls WHERE merchant_id = @m AND state = 'released'", new { m = m.MerchantId }));
        Assert.DoesNotContain(App.Logs.Lines, line => line.Contains(key) || line.Contains(m.SecretKey));
    }

    public static TheoryData<string, string> HugeUsage => new()
    {
        // Three counts of 2^63 − 1 would wrap a long when summed into the input.
        { "/v1/messages", """{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Hello world"}],"stop_reason":"end_turn","usage":{"input_tokens":9223372036854775807,"cache_creation_input_tokens":9223372036854775807,"cache_read_input_tokens":9223372036854775807,"output_tokens":5}}""" },
        // Past a long altogether, and past the report limit (10^12) by one.
        { "/v1/chat/completions", """{"id":"c1","object":"chat.completion","model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hello world"},"finish_reason":"stop"}],"usage":{"prompt_tokens":100000000000000000000000000000000,"completion_tokens":1000000000001}}""" },
    };

    [Theory]
    [MemberData(nameof(HugeUsage))]
    public async Task ProviderUsagePastTheReportLimitsIsNeverBilledNorWrappedButEstimatedAndFlagged(string path, string answer)
    {
        var (m, customer) = await CustomerWithCreditsAsync();
        Fake.Next.Enqueue(http => FakeProvider.Json(http, answer));
        var body = path == "/v1/messages"
            ? Http.Json("""{"model":"claude-sonnet-4-5","max_tokens":1000,"messages":[{"role":"user","content":"Say hello"}]}""")
            : Chat();

        var r = await App.ClientWithToken(m.SecretKey, customer, "chat").PostAsync(App.Forward(path), body);
        await r.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, r.StatusCode);
        var args = new { m = m.MerchantId, r = r.Headers.GetValues("x-lava-request-id").Single() };
        var (input, output, metadata) = await App.QueryAsync<(long, long, string)>(
            "SELECT input_tokens, output_tokens, metadata::text FROM requests WHERE merchant_id = @m AND request_id = @r", args);
        // The gateway's own estimate: the short prompt; a body that is not streamed shows no output to estimate from.
        Assert.InRange(input, 1, 100);
        Assert.Equal(0, output);
        Assert.Equal("""{"estimated": "true", "gateway_anomaly": "usage_out_of_range"}""", metadata);
        Assert.Equal("usage_out_of_range", await App.QueryAsync<string>(
            "SELECT anomaly FROM forward_calls WHERE merchant_id = @m AND request_id = @r", args));
        Assert.Equal("captured", await App.QueryAsync<string>("SELECT status FROM holds WHERE merchant_id = @m", args));
    }
}
