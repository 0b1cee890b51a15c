using System.Net;
using Lava.Billing.Forward;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Lava.Billing.Tests.Forward;

/// <summary>The gateway as shipped: a response ends when the answer does, not when its usage has been posted.</summary>
public sealed class PostingGatewayApp : GatewayApp
{
    protected override bool ResponseWaitsForPosting => false;
}

/// <summary>A served call is posted after its response, by a bounded queue that takes merchants in turn, and never twice.</summary>
public class GatewayPostingTests(PostingGatewayApp app) : GatewayTest<PostingGatewayApp>(app)
{
    private static HttpContent Chat() =>
        Http.Json(new { model = "gpt-4o", max_tokens = 1000, messages = new[] { new { role = "user", content = "Say hello" } } });

    private async Task<(LavaApp.Merchant M, HttpClient Client, string Customer)> ArrangeAsync()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "chat", "fixed", "tokens_1m", (0, 5m));
        await App.GrantAsync(m.MerchantId, customer, 1m);
        var client = App.ClientWithToken(m.SecretKey, customer, "chat");
        // The gateway's path warmed up by a call of another merchant, so the timed call below takes its usual milliseconds.
        var warm = await App.NewMerchantAsync();
        await App.MeterAsync(warm.MerchantId, "chat", "fixed", "tokens_1m", (0, 5m));
        var warmCustomer = await App.CustomerAsync(warm.MerchantId);
        await App.GrantAsync(warm.MerchantId, warmCustomer, 1m);
        Assert.Equal(HttpStatusCode.OK, (await App.ClientWithToken(warm.SecretKey, warmCustomer, "chat").PostAsync(App.Forward("/v1/chat/completions"), Chat())).StatusCode);
        await App.PostedAsync();
        // A blocked posting waits 5 s for its locks, up to three times: a response that waited for it would not come within this.
        client.Timeout = TimeSpan.FromSeconds(8);
        return (m, client, customer);
    }

    /// <summary>
    /// Keeps every posting waiting (a report inserts into requests) while the gateway admits and serves calls, until
    /// disposed (the lock's transaction rolled back).
    /// </summary>
    private async Task<IAsyncDisposable> BlockPostingAsync()
    {
        var c = new NpgsqlConnection(App.ConnectionString);
        await c.OpenAsync();
        var tx = await c.BeginTransactionAsync();
        await using var command = new NpgsqlCommand("LOCK TABLE requests IN EXCLUSIVE MODE", c, tx);
        await command.ExecuteNonQueryAsync();
        return new PostingBlock(c, tx);
    }

    private sealed class PostingBlock(NpgsqlConnection connection, NpgsqlTransaction tx) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await tx.RollbackAsync();
            await connection.DisposeAsync();
        }
    }

    private Task<(string State, int Attempts, string? LastError)> RecordAsync(string requestId) =>
        App.QueryAsync<(string, int, string?)>("SELECT state, attempts, last_error FROM forward_calls WHERE request_id = @requestId", new { requestId });

    [Fact]
    public async Task TheClientHasTheWholeAnswerWhileItsUsageIsStillBeingPostedAndThenItIsPosted()
    {
        var (m, client, customer) = await ArrangeAsync();
        string requestId;
        await using (await BlockPostingAsync())
        {
            var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat());

            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Contains("chat.completion", await r.Content.ReadAsStringAsync());
            requestId = r.Headers.GetValues("x-lava-request-id").Single();
            // The usage is on disk and its posting under way (not failed, not retried): only the ledger waits.
            Assert.Equal(("served", 0, (string?)null), await RecordAsync(requestId));
            Assert.Equal("active", await App.QueryAsync<string>("SELECT status FROM holds WHERE merchant_id = @m", new { m = m.MerchantId }));
        }

        await App.PostedAsync();
        Assert.Equal("posted", (await RecordAsync(requestId)).State);
        Assert.Equal(0.0075m, await App.QueryAsync<decimal>("SELECT charge_amount FROM requests WHERE request_id = @requestId", new { requestId }));
        Assert.Equal("captured", await App.QueryAsync<string>("SELECT status FROM holds WHERE merchant_id = @m", new { m = m.MerchantId }));
        Assert.Equal("0.9925000000", (string)(await m.Client.GetJsonAsync($"/v1/customers/{customer}/balance")).Body!["available"]!);
    }

    [Fact]
    public async Task WhenTheSettleWorkerPostsAQueuedCallAtTheSameTimeTheCallIsBilledOnce()
    {
        var (m, client, customer) = await ArrangeAsync();
        string requestId;
        await using (await BlockPostingAsync())
        {
            var r = await client.PostAsync(App.Forward("/v1/chat/completions"), Chat());
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            requestId = r.Headers.GetValues("x-lava-request-id").Single();
            // Its posting lease ends at once: the settle worker (every 100 ms here) claims the call the queue is posting.
            await App.QueryAsync<int>("UPDATE forward_calls SET next_attempt_at = now() - interval '1 second' WHERE request_id = @requestId RETURNING 1",
                new { requestId });
            var deadline = DateTime.UtcNow.AddSeconds(3);
            while ((await RecordAsync(requestId)).Attempts == 0)
            {
                Assert.True(DateTime.UtcNow < deadline, "the settle worker never claimed the call");
                await Task.Delay(20);
            }
        }

        await App.PostedAsync();
        await Waits.UntilAsync(async () => (await RecordAsync(requestId)).State == "posted", "the call was posted");
        Assert.Equal(1, await App.QueryAsync<long>("SELECT count(*) FROM requests WHERE merchant_id = @m", new { m = m.MerchantId }));
        Assert.Equal(1, await App.QueryAsync<long>(
            "SELECT count(*) FROM ledger_transactions WHERE merchant_id = @m AND reference = @requestId", new { m = m.MerchantId, requestId }));
        Assert.Equal("0.9925000000", (string)(await m.Client.GetJsonAsync($"/v1/customers/{customer}/balance")).Body!["available"]!);
    }

    private static ForwardCallRecord Served(string merchantId, int n) => new(merchantId, $"req_{merchantId}_{n}", ForwardMode.Gateway, null, null, null,
        new ForwardCallDetails("api.openai.com", "managed", null, "/v1/chat/completions", "https://api.openai.com/v1/chat/completions", null, []),
        new BilledUsage(NormalizedUsage.None, null, false), null, DateTimeOffset.UtcNow, 0);

    // A queue that is never started: only what it takes and in which order.
    private ForwardPostingQueue Unstarted() => new(App.Services.GetRequiredService<ForwardBilling>(), App.Services.GetRequiredService<ForwardOptions>(), NullLogger<ForwardPostingQueue>.Instance);

    [Fact]
    public void OneMerchantCannotFillTheQueueAndItsCallsWaitTheirTurnBehindNobodyElses()
    {
        var queue = Unstarted();
        for (var i = 0; i < ForwardPostingQueue.MaxQueuedPerMerchant; i++) Assert.True(queue.TryEnqueue(Served("mer_busy", i)));

        // The busy merchant's next call is posted on its own request's time; another merchant is still taken.
        Assert.False(queue.TryEnqueue(Served("mer_busy", ForwardPostingQueue.MaxQueuedPerMerchant)));
        Assert.True(queue.TryEnqueue(Served("mer_quiet", 0)));

        var batch = queue.TakeBatch();
        Assert.Equal(ForwardPostingQueue.MaxBatch, batch.Count);
        Assert.Equal(["mer_busy", "mer_quiet", "mer_busy"], batch.Take(3).Select(b => b.MerchantId));
    }

    [Fact]
    public void AFullQueueTakesNoMore()
    {
        var queue = Unstarted();
        var merchants = ForwardPostingQueue.MaxQueued / ForwardPostingQueue.MaxQueuedPerMerchant;
        for (var m = 0; m < merchants; m++)
            for (var i = 0; i < ForwardPostingQueue.MaxQueuedPerMerchant; i++) Assert.True(queue.TryEnqueue(Served($"mer_{m}", i)));

        Assert.False(queue.TryEnqueue(Served("mer_new", 0)));
        Assert.False(queue.Idle);
    }
}
