using System.Net;
using Dapper;
using Lava.Billing.Forward;
using Lava.Billing.Infrastructure;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Forward;

/// <summary>The gateway gathering served calls before it posts them, for a second here (50 ms by default) so that a slow test machine still gathers them.</summary>
public sealed class GatheringGatewayApp : GatewayApp
{
    protected override bool ResponseWaitsForPosting => false;

    protected override IEnumerable<(string Key, string Value)> Settings() => [.. base.Settings(), ("Forward:PostingDelayMs", "1000")];
}

/// <summary>Calls served close together are posted together: one posting transaction and one close for all of them.</summary>
public class GatewayPostingDelayTests(GatheringGatewayApp app) : GatewayTest<GatheringGatewayApp>(app)
{
    private static HttpContent Chat() =>
        Http.Json(new { model = "gpt-4o", max_tokens = 1000, messages = new[] { new { role = "user", content = "Say hello" } } });

    [Fact]
    public async Task CallsServedWithinThePostingDelayArePostedInOneTransaction()
    {
        var (m, customer) = await App.ChatCustomerAsync();
        var client = App.ClientWithToken(m.SecretKey, customer, "chat");
        // One call through the gateway starts the second-long gathering; two more calls, served by hand beforehand, are
        // handed to the queue right behind it: nothing but memory work between them, so a slow machine cannot spread the
        // three past the second as three HTTP calls could.
        var served = new List<ForwardCallRecord>();
        for (var i = 0; i < 2; i++)
        {
            var (hold, request) = await ServedCallAsync(m.MerchantId, customer, "chat");
            served.Add(Record(m.MerchantId, customer, request, hold));
        }
        var queue = App.Services.GetRequiredService<ForwardPostingQueue>();
        var before = queue.GatheringsEnded;
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsync(App.Forward("/v1/chat/completions"), Chat())).StatusCode);
        foreach (var call in served) Assert.True(queue.TryEnqueue(call));
        await App.PostedAsync();

        var after = queue.GatheringsEnded;
        Assert.Equal((0L, 1L), (after.Full - before.Full, after.Delay - before.Delay));
        var args = new { m = m.MerchantId };
        Assert.Equal((3L, 1L), await App.QueryAsync<(long, long)>(
            "SELECT count(*), count(DISTINCT xmin::text) FROM requests WHERE merchant_id = @m", args));
        Assert.Equal(3L, await App.QueryAsync<long>("SELECT count(*) FROM forward_calls WHERE merchant_id = @m AND state = 'posted'", args));
        Assert.Equal(3L, await App.QueryAsync<long>("SELECT count(*) FROM holds WHERE merchant_id = @m AND status = 'captured'", args));
    }

    [Fact]
    public async Task InABatchPostedTogetherACallWhoseHoldLapsedIsPostedWithoutItAndItsNeighbourCapturesItsOwn()
    {
        var (m, customer) = await App.ChatCustomerAsync();
        var lapsed = (Hold: Ids.New("hld"), Request: Ids.New("req"));
        var live = (Hold: Ids.New("hld"), Request: Ids.New("req"));
        // Two served calls left to the caller below (due only tomorrow, so the settle worker stays out of them): one whose
        // hold's hour ran out while it ran, one whose hold is still active.
        await using (var c = new NpgsqlConnection(App.ConnectionString))
        {
            await c.ExecuteAsync("""
                INSERT INTO holds (merchant_id, hold_id, customer_id, amount, status, expires_at, created_at)
                VALUES (@m, @lapsedHold, @customer, 0.5, 'active', now() - interval '1 minute', now() - interval '61 minutes'),
                       (@m, @liveHold, @customer, 0.2, 'active', now() + interval '1 hour', now());
                INSERT INTO forward_calls (merchant_id, request_id, state, mode, customer_id, meter_slug, hold_id, call,
                                           input_uncached, output_tokens, estimated, served_at, next_attempt_at, created_at, updated_at)
                VALUES (@m, @lapsedRequest, 'served', 'customer', @customer, 'chat', @lapsedHold, '{}', 1000, 200, false,
                        now(), now() + interval '1 day', now(), now()),
                       (@m, @liveRequest, 'served', 'customer', @customer, 'chat', @liveHold, '{}', 1000, 200, false,
                        now(), now() + interval '1 day', now(), now());
                """, new
            {
                m = m.MerchantId, customer, lapsedHold = lapsed.Hold, lapsedRequest = lapsed.Request, liveHold = live.Hold, liveRequest = live.Request,
            });
        }
        var batch = new[] { Record(m.MerchantId, customer, lapsed.Request, lapsed.Hold), Record(m.MerchantId, customer, live.Request, live.Hold) };

        await App.Services.GetRequiredService<ForwardBilling>().SettleManyAsync(batch, CancellationToken.None);

        await using var db = new NpgsqlConnection(App.ConnectionString);
        var rows = (await db.QueryAsync<(string, string, string?, string)>("""
            SELECT f.request_id, f.state, r.hold_id, h.status
              FROM forward_calls f
              JOIN requests r ON r.merchant_id = f.merchant_id AND r.request_id = f.request_id
              JOIN holds h ON h.merchant_id = f.merchant_id AND h.hold_id = f.hold_id
             WHERE f.merchant_id = @m
            """, new { m = m.MerchantId })).ToDictionary(r => r.Item1, r => (r.Item2, r.Item3, r.Item4));
        Assert.Equal(("posted", (string?)null, "voided"), rows[lapsed.Request]);
        Assert.Equal(("posted", live.Hold, "captured"), rows[live.Request]);
        Assert.Equal((2L, 0.012m), await App.QueryAsync<(long, decimal)>(
            "SELECT count(*), sum(charge_amount) FROM requests WHERE merchant_id = @m", new { m = m.MerchantId }));
    }

    [Fact]
    public async Task InABatchOfTwoMerchantsOneMerchantsRefusedCallLeavesTheOtherMerchantsCallPosted()
    {
        var (a, customerA) = await App.ChatCustomerAsync();
        var (b, customerB) = await App.ChatCustomerAsync();
        var good = await ServedCallAsync(a.MerchantId, customerA, "chat");
        // Its meter is gone by the time it is posted: the poster refuses this report, and only this one.
        var refused = await ServedCallAsync(b.MerchantId, customerB, "deleted-meter");
        var batch = new[] { Record(b.MerchantId, customerB, refused.Request, refused.Hold, "deleted-meter"), Record(a.MerchantId, customerA, good.Request, good.Hold) };

        await App.Services.GetRequiredService<ForwardBilling>().SettleManyAsync(batch, CancellationToken.None);

        Assert.Equal(("posted", "captured"), await App.QueryAsync<(string, string)>("""
            SELECT f.state, h.status FROM forward_calls f JOIN holds h ON h.merchant_id = f.merchant_id AND h.hold_id = f.hold_id
             WHERE f.merchant_id = @m AND f.request_id = @r
            """, new { m = a.MerchantId, r = good.Request }));
        Assert.Equal(1L, await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", new { m = a.MerchantId }));
        Assert.Equal(0L, await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", new { m = b.MerchantId }));
        Assert.NotEqual("posted", await App.QueryAsync<string>(
            "SELECT state FROM forward_calls WHERE merchant_id = @m AND request_id = @r", new { m = b.MerchantId, r = refused.Request }));
    }

    /// <summary>A served call and its active hold, due only tomorrow so the settle worker leaves it to the test.</summary>
    private Task<(string Hold, string Request)> ServedCallAsync(string merchantId, string customer, string meterSlug) =>
        ServedCallAsync(App, merchantId, customer, meterSlug);

    internal static async Task<(string Hold, string Request)> ServedCallAsync(GatewayApp app, string merchantId, string customer, string meterSlug)
    {
        var call = (Hold: Ids.New("hld"), Request: Ids.New("req"));
        await using var c = new NpgsqlConnection(app.ConnectionString);
        await c.ExecuteAsync("""
            INSERT INTO holds (merchant_id, hold_id, customer_id, amount, status, expires_at, created_at)
            VALUES (@m, @hold, @customer, 0.2, 'active', now() + interval '1 hour', now());
            INSERT INTO forward_calls (merchant_id, request_id, state, mode, customer_id, meter_slug, hold_id, call,
                                       input_uncached, output_tokens, estimated, served_at, next_attempt_at, created_at, updated_at)
            VALUES (@m, @request, 'served', 'customer', @customer, @meterSlug, @hold, '{}', 1000, 200, false,
                    now(), now() + interval '1 day', now(), now());
            """, new { m = merchantId, customer, hold = call.Hold, request = call.Request, meterSlug });
        return call;
    }

    internal static ForwardCallRecord Record(string merchantId, string customer, string requestId, string holdId, string meterSlug = "chat") => new(
        merchantId, requestId, ForwardMode.Customer, customer, meterSlug, holdId,
        new ForwardCallDetails("api.openai.com", "managed", "gpt-4o", "/v1/chat/completions", "https://api.openai.com/v1/chat/completions", null, []),
        new BilledUsage(new NormalizedUsage(1000, 0, 0, 200, 0), null, false), null,
        // As PostgreSQL keeps it (microseconds), so a repost would match.
        new DateTimeOffset(DateTimeOffset.UtcNow.UtcTicks / 10 * 10, TimeSpan.Zero), 1);
}

/// <summary>A batch that fills while the posting delay runs does not wait for the delay.</summary>
public class GatewayFullBatchTests(GatheringGatewayApp app) : GatewayTest<GatheringGatewayApp>(app)
{
    [Fact]
    public async Task ABatchFilledWhileThePostingDelayRunsIsPostedAtOnceInsteadOfAfterTheDelay()
    {
        var (m, customer) = await App.ChatCustomerAsync();
        var calls = new List<ForwardCallRecord>();
        for (var i = 0; i < ForwardPostingQueue.MaxBatch; i++)
        {
            var (hold, request) = await GatewayPostingDelayTests.ServedCallAsync(App, m.MerchantId, customer, "chat");
            calls.Add(GatewayPostingDelayTests.Record(m.MerchantId, customer, request, hold));
        }
        var queue = App.Services.GetRequiredService<ForwardPostingQueue>();

        // The first call starts the second-long gathering; the rest fill the batch a moment later. What ended the gathering
        // is counted by the queue, so a slow machine cannot make this pass or fail by timing.
        var before = queue.GatheringsEnded;
        Assert.True(queue.TryEnqueue(calls[0]));
        await Task.Delay(50);
        foreach (var call in calls.Skip(1)) Assert.True(queue.TryEnqueue(call));
        await App.PostedAsync();

        var after = queue.GatheringsEnded;
        Assert.Equal((1L, 0L), (after.Full - before.Full, after.Delay - before.Delay));

        Assert.Equal(((long)ForwardPostingQueue.MaxBatch, 1L), await App.QueryAsync<(long, long)>(
            "SELECT count(*), count(DISTINCT xmin::text) FROM requests WHERE merchant_id = @m", new { m = m.MerchantId }));
    }
}
