using Dapper;
using Lava.Billing.Tests.Infrastructure;
using Lava.Billing.Webhooks;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Webhooks;

/// <summary>Deliveries written straight into the outbox, already fanned out and due: a backlog without thousands of API calls.</summary>
internal static class Backlog
{
    /// <summary>
    /// <paramref name="count"/> due deliveries to the endpoint, one customer each (so none waits in another's line), the
    /// oldest due <paramref name="dueAgo"/> ago; returns their ids. The table is analysed after, as autovacuum would
    /// soon analyse a table that grew this much: planned from the statistics of the emptied test table, the claim would
    /// read the backlog in sequential scans.
    /// </summary>
    public static async Task<List<string>> AddAsync(LavaApp app, string merchantId, string webhookId, int count, TimeSpan dueAgo)
    {
        await using var c = new NpgsqlConnection(app.ConnectionString);
        var ids = (await c.QueryAsync<string>("""
            WITH events AS (
                INSERT INTO webhook_events (merchant_id, customer_id, type, payload, fanned_out_at)
                SELECT @MerchantId, 'cus_backlog_' || g, 'customer.created', '{"event":"customer.created","data":{}}', now()
                  FROM generate_series(1, @Count) g
                RETURNING merchant_id, event_seq, customer_id
            )
            INSERT INTO webhook_deliveries (merchant_id, delivery_id, webhook_id, event_seq, order_key, status, next_attempt_at)
            SELECT merchant_id, 'dlv_backlog_' || event_seq, @WebhookId, event_seq, customer_id, 'pending',
                   now() - @DueAgo + (row_number() OVER (ORDER BY event_seq)) * interval '1 ms'
              FROM events
            RETURNING delivery_id
            """, new { MerchantId = merchantId, WebhookId = webhookId, Count = count, DueAgo = dueAgo })).AsList();
        await c.ExecuteAsync("ANALYZE webhook_deliveries");
        return ids;
    }
}

/// <summary>The claim takes turns across endpoints: one endpoint's backlog does not hide another's due deliveries.</summary>
public class WebhookClaimFairnessTests(UndispatchedWebhookApp app) : IClassFixture<UndispatchedWebhookApp>, IAsyncLifetime
{
    private static readonly TimeSpan Lease = TimeSpan.FromMinutes(1);

    public Task InitializeAsync() => app.ResetAsync();

    public Task DisposeAsync() => Task.CompletedTask;

    private WebhookDeliveryStore Store => app.Services.GetRequiredService<WebhookDeliveryStore>();

    private Task<long> LeasedAsync(string merchantId) => app.QueryAsync<long>(
        "SELECT count(*) FROM webhook_deliveries WHERE merchant_id = @m AND status = 'pending' AND lease_until >= now()", new { m = merchantId });

    [Fact]
    public async Task AnotherMerchantsDeliveryIsClaimedInTheNextRoundBehindThousandsOfOneEndpointsDueDeliveries()
    {
        var a = await app.NewMerchantAsync("backlogged");
        var b = await app.NewMerchantAsync("quiet");
        var (aHook, _) = await WebhookDeliveryTests.CreateWebhookAsync(a, "http://127.0.0.1:9/a");
        var (bHook, _) = await WebhookDeliveryTests.CreateWebhookAsync(b, "http://127.0.0.1:9/b");
        await Backlog.AddAsync(app, a.MerchantId, aHook, 3000, TimeSpan.FromHours(1));

        // One instance claims: A's endpoint gets its four, and they stay in flight (a slow receiver).
        var first = await Store.ClaimAsync(64, 4, 16, [], Lease, CancellationToken.None);
        Assert.Equal(4, first.Count);
        Assert.All(first, d => Assert.Equal(aHook, d.WebhookId));

        // Then B's event comes due, newer than all of A's. The next round, on another instance (which knows nothing of
        // the first one's slots), takes it, and nothing more of A's.
        var bDelivery = (await Backlog.AddAsync(app, b.MerchantId, bHook, 1, TimeSpan.Zero)).Single();
        var next = await Store.ClaimAsync(64, 4, 16, [], Lease, CancellationToken.None);
        Assert.Equal([bDelivery], next.Select(d => d.DeliveryId));
        Assert.Equal(4L, await LeasedAsync(a.MerchantId));
    }

    [Fact]
    public async Task AMerchantWithManyEndpointsTakesItsOwnShareAndAnotherMerchantsDeliveryTheFirstRound()
    {
        var a = await app.NewMerchantAsync("many endpoints");
        var b = await app.NewMerchantAsync("quiet");
        for (var i = 0; i < 70; i++)
        {
            var (hook, _) = await WebhookDeliveryTests.CreateWebhookAsync(a, $"http://127.0.0.1:9/a{i}");
            await Backlog.AddAsync(app, a.MerchantId, hook, 20, TimeSpan.FromMinutes(10));
        }
        var (bHook, _) = await WebhookDeliveryTests.CreateWebhookAsync(b, "http://127.0.0.1:9/b");
        var bDelivery = (await Backlog.AddAsync(app, b.MerchantId, bHook, 1, TimeSpan.Zero)).Single();

        // Per endpoint, A's 70 endpoints had room for 280 and an older backlog: B's delivery waited five rounds of 64.
        var first = await Store.ClaimAsync(64, 4, 16, [], Lease, CancellationToken.None);
        Assert.Contains(bDelivery, first.Select(d => d.DeliveryId));
        Assert.Equal(16, first.Count(d => d.MerchantId == a.MerchantId));
        // A's share stays taken while its deliveries are in flight, whichever instance claims next.
        Assert.Empty(await Store.ClaimAsync(64, 4, 16, [], Lease, CancellationToken.None));
        Assert.Equal(16L, await LeasedAsync(a.MerchantId));
    }

    [Fact]
    public async Task MerchantsTakeTurnsEvenWhenOneHasManyEndpointsWithOlderDeliveries()
    {
        var a = await app.NewMerchantAsync("many endpoints");
        var b = await app.NewMerchantAsync("one endpoint");
        for (var i = 0; i < 5; i++)
        {
            var (hook, _) = await WebhookDeliveryTests.CreateWebhookAsync(a, $"http://127.0.0.1:9/a{i}");
            await Backlog.AddAsync(app, a.MerchantId, hook, 3, TimeSpan.FromMinutes(10));
        }
        var (bHook, _) = await WebhookDeliveryTests.CreateWebhookAsync(b, "http://127.0.0.1:9/b");
        var bDelivery = (await Backlog.AddAsync(app, b.MerchantId, bHook, 1, TimeSpan.Zero)).Single();

        // Room for two: A's first (its oldest) and B's first, not two of A's endpoints' firsts.
        var claimed = await Store.ClaimAsync(2, 4, 16, [], Lease, CancellationToken.None);
        Assert.Equal(2, claimed.Count);
        Assert.Single(claimed, d => d.MerchantId == a.MerchantId);
        Assert.Contains(bDelivery, claimed.Select(d => d.DeliveryId));
    }

    [Fact]
    public async Task AMerchantsLastSlotGoesToItsEndpointWithTheFewestInFlight()
    {
        var a = await app.NewMerchantAsync("busy and idle endpoints");
        var (busy, _) = await WebhookDeliveryTests.CreateWebhookAsync(a, "http://127.0.0.1:9/busy");
        await Backlog.AddAsync(app, a.MerchantId, busy, 10, TimeSpan.FromMinutes(10));
        Assert.Equal(3, (await Store.ClaimAsync(3, 4, 4, [], Lease, CancellationToken.None)).Count);
        var (idle, _) = await WebhookDeliveryTests.CreateWebhookAsync(a, "http://127.0.0.1:9/idle");
        var idleDelivery = (await Backlog.AddAsync(app, a.MerchantId, idle, 1, TimeSpan.Zero)).Single();

        // The merchant has one slot left; the busy endpoint (three in flight, an older backlog) has room for one too.
        var claimed = await Store.ClaimAsync(64, 4, 4, [], Lease, CancellationToken.None);
        Assert.Equal([idleDelivery], claimed.Select(d => d.DeliveryId));
    }

    [Fact]
    public async Task ARoundGivesEveryEndpointWithDueDeliveriesItsFirstBeforeAnyEndpointItsSecond()
    {
        var merchants = new List<(string MerchantId, string WebhookId)>();
        for (var i = 0; i < 3; i++)
        {
            var m = await app.NewMerchantAsync($"merchant {i}");
            var (hook, _) = await WebhookDeliveryTests.CreateWebhookAsync(m, $"http://127.0.0.1:9/{i}");
            // The first merchant's deliveries are the oldest and the most.
            await Backlog.AddAsync(app, m.MerchantId, hook, i == 0 ? 500 : 3, TimeSpan.FromMinutes(10 - i));
            merchants.Add((m.MerchantId, hook));
        }

        var claimed = await Store.ClaimAsync(3, 4, 16, [], Lease, CancellationToken.None);
        Assert.Equal(merchants.Select(m => m.WebhookId).Order(), claimed.Select(d => d.WebhookId).Order());

        // With room for all, each endpoint gets up to its limit and no more.
        var rest = await Store.ClaimAsync(64, 4, 16, [], Lease, CancellationToken.None);
        Assert.Equal([3, 2, 2], merchants.Select(m => rest.Count(d => d.WebhookId == m.WebhookId)));
        foreach (var (merchantId, _) in merchants) Assert.True(await LeasedAsync(merchantId) <= 4);
    }
}

/// <summary>Two dispatching instances with room for three deliveries each, so one endpoint's four slots span both.</summary>
public sealed class TwoSmallDispatchersApp : WebhookApp
{
    private Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactory<Program>? _second;

    protected override IEnumerable<(string Key, string Value)> Settings() => [.. base.Settings(), ("Webhooks:MaxInFlight", "3")];

    /// <summary>Started on first use; same configuration and database, its own dispatcher.</summary>
    public Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactory<Program> Second => _second ??= WithWebHostBuilder(_ => { });
}

/// <summary>The same through two dispatchers: a slow endpoint's backlog of thousands does not delay another merchant.</summary>
public class WebhookBacklogDispatchTests(TwoSmallDispatchersApp app) : IClassFixture<TwoSmallDispatchersApp>, IAsyncLifetime
{
    private readonly WebhookReceiver _slow = new();
    private readonly WebhookReceiver _healthy = new();
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Task InitializeAsync() => app.ResetAsync();

    public async Task DisposeAsync()
    {
        _release.TrySetResult();
        await _slow.DisposeAsync();
        await _healthy.DisposeAsync();
    }

    [Fact]
    public async Task AMerchantsDeliveryGoesOutAtOnceWhileAnotherMerchantsSlowEndpointHasThousandsDue()
    {
        _ = app.Second.Services; // the second dispatcher runs from here on
        var a = await app.NewMerchantAsync("slow");
        var b = await app.NewMerchantAsync("healthy");
        var inFlight = 0;
        var most = 0;
        _slow.Answer = async (context, _, _) =>
        {
            var now = Interlocked.Increment(ref inFlight);
            lock (_slow) most = Math.Max(most, now);
            await Task.WhenAny(_release.Task, Task.Delay(20_000));
            Interlocked.Decrement(ref inFlight);
            context.Response.StatusCode = 500;
        };
        var (aHook, _) = await WebhookDeliveryTests.CreateWebhookAsync(a, _slow.Url);
        await WebhookDeliveryTests.CreateWebhookAsync(b, _healthy.Url);
        // One instance takes three of the endpoint's four slots (all its room), the other the fourth: neither is full
        // on the endpoint by its own count, and the second has room for more.
        await Backlog.AddAsync(app, a.MerchantId, aHook, 3000, TimeSpan.FromHours(1));
        await _slow.WaitForAsync(r => r.Count >= 4);

        var started = DateTimeOffset.UtcNow;
        await b.Client.PostJsonAsync("/v1/customers", new { name = "Grace Hopper" });
        var got = (await _healthy.WaitForAsync(r => r.Count >= 1, timeoutMs: 10_000)).Single();
        Assert.Equal("customer.created", got.Event);
        Assert.True(got.At - started < TimeSpan.FromSeconds(3), $"took {(got.At - started).TotalMilliseconds} ms");
        Assert.Equal(4, _slow.Requests.Count);
        Assert.Equal(4, most);
    }
}

/// <summary>One instance with four delivery slots, a merchant allowed two of them, and attempts that time out in 20 s.</summary>
public sealed class FourSlotsWebhookApp : WebhookApp
{
    protected override IEnumerable<(string Key, string Value)> Settings() =>
        [.. base.Settings(), ("Webhooks:MaxInFlight", "4"), ("Webhooks:MaxInFlightPerMerchant", "2"), ("Webhooks:AttemptTimeoutMs", "20000")];
}

/// <summary>A merchant's slow endpoints take its own share of the instance's slots, never all of them.</summary>
public class WebhookMerchantShareTests(FourSlotsWebhookApp app) : IClassFixture<FourSlotsWebhookApp>, IAsyncLifetime
{
    private readonly List<WebhookReceiver> _receivers = [];

    public Task InitializeAsync() => app.ResetAsync();

    public async Task DisposeAsync()
    {
        foreach (var r in _receivers) await r.DisposeAsync();
    }

    [Fact]
    public async Task AnotherMerchantsDeliveryGoesOutWhileOneMerchantsSlowEndpointsHaveABacklog()
    {
        var a = await app.NewMerchantAsync("slow");
        var b = await app.NewMerchantAsync("healthy");
        var slowCalls = 0;
        for (var i = 0; i < 4; i++)
        {
            var slow = new WebhookReceiver
            {
                Answer = async (context, _, _) =>
                {
                    Interlocked.Increment(ref slowCalls);
                    try { await Task.Delay(30_000, context.RequestAborted); } catch (OperationCanceledException) { }
                },
            };
            _receivers.Add(slow);
            await WebhookDeliveryTests.CreateWebhookAsync(a, slow.Url);
        }
        for (var i = 0; i < 5; i++) await a.Client.PostJsonAsync("/v1/customers", new { name = $"a{i}" });
        var healthy = new WebhookReceiver();
        _receivers.Add(healthy);
        await WebhookDeliveryTests.CreateWebhookAsync(b, healthy.Url);
        await Waits.UntilAsync(() => Volatile.Read(ref slowCalls) >= 2, "the slow merchant's deliveries are in flight");

        // Before, A's twenty deliveries took all four slots, each for its 20-s attempt: B's waited at least that long.
        var started = DateTimeOffset.UtcNow;
        await b.Client.PostJsonAsync("/v1/customers", new { name = "b" });
        var got = (await healthy.WaitForAsync(r => r.Count >= 1, timeoutMs: 15_000)).Single();
        Assert.True(got.At - started < TimeSpan.FromSeconds(10), $"took {(got.At - started).TotalMilliseconds} ms");
    }
}
