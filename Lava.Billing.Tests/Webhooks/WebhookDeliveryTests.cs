using System.Net;
using System.Text.Json.Nodes;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Webhooks;

/// <summary>Events reach a receiver on loopback: signed, retried, in order, once acknowledged.</summary>
public class WebhookDeliveryTests(WebhookApp app) : IClassFixture<WebhookApp>, IAsyncLifetime
{
    private readonly List<WebhookReceiver> _receivers = [];

    public Task InitializeAsync() => app.ResetAsync();

    public async Task DisposeAsync()
    {
        foreach (var r in _receivers) await r.DisposeAsync();
    }

    private WebhookReceiver NewReceiver()
    {
        var r = new WebhookReceiver();
        _receivers.Add(r);
        return r;
    }

    public static async Task<(string Id, string Secret)> CreateWebhookAsync(LavaApp.Merchant m, string url, object? eventTypes = null)
    {
        var r = await m.Client.PostJsonAsync("/v1/webhooks", new { name = "hooks", url, event_types = eventTypes });
        Assert.Equal(HttpStatusCode.Created, r.Status);
        return ((string)r.Body!["webhook_id"]!, (string)r.Body["webhook_secret"]!);
    }

    private static async Task<string> CreateCustomerAsync(LavaApp.Merchant m, string name = "Ada Lovelace") =>
        (string)(await m.Client.PostJsonAsync("/v1/customers", new { name, email = "ada@example.com" })).Body!["customer_id"]!;

    [Fact]
    public async Task ACreatedCustomerIsDeliveredSignedBothWays()
    {
        var m = await app.NewMerchantAsync();
        var receiver = NewReceiver();
        var (_, secret) = await CreateWebhookAsync(m, receiver.Url);
        var customerId = await CreateCustomerAsync(m);

        var got = (await receiver.WaitForAsync(r => r.Count >= 1)).Single();
        Assert.Equal("customer.created", got.Event);
        var data = got.Json["data"]!;
        Assert.Equal(customerId, (string)data["customer_id"]!);
        Assert.Equal("Ada", (string)data["contact"]!["first_name"]!);
        Assert.Null(data["subscription"]);
        Assert.True(data.AsObject().ContainsKey("subscription"));
        Assert.True(WebhookReceiver.VerifiesStandardWebhooks(got, secret));
        Assert.True(WebhookReceiver.VerifiesLava(got, secret));
        Assert.False(WebhookReceiver.VerifiesStandardWebhooks(got, "whsec_" + Convert.ToBase64String(new byte[32])));
        Assert.StartsWith("application/json", got.Headers["content-type"]);
    }

    [Fact]
    public async Task AReceiverThatFailsThreeTimesGetsTheEventUntilItAcknowledgesItAndNoMore()
    {
        var m = await app.NewMerchantAsync();
        var receiver = NewReceiver();
        receiver.Answer = (context, _, index) =>
        {
            context.Response.StatusCode = index < 3 ? 500 : 204;
            return Task.CompletedTask;
        };
        var (webhookId, _) = await CreateWebhookAsync(m, receiver.Url);
        await CreateCustomerAsync(m);

        var got = await receiver.WaitForAsync(r => r.Count >= 4);
        Assert.Single(got.Select(r => r.Id).Distinct());
        Assert.Single(got.Select(r => r.Body).Distinct());
        await Task.Delay(800);
        Assert.Equal(4, receiver.Requests.Count);

        var log = (await m.Client.GetJsonAsync($"/v1/webhooks/{webhookId}/deliveries")).Body!["data"]!.AsArray().Single()!;
        Assert.Equal("delivered", (string)log["status"]!);
        Assert.Equal(4, (int)log["attempts"]!);
        Assert.Equal(204, (int)log["last_response_code"]!);
        Assert.Null(log["next_attempt_at"]);
        Assert.Equal(got[0].Id, (string)log["event_id"]!);
    }

    [Fact]
    public async Task ADeliveryIsResentOnRequestEvenAfterItSucceeded()
    {
        var m = await app.NewMerchantAsync();
        var receiver = NewReceiver();
        var (webhookId, _) = await CreateWebhookAsync(m, receiver.Url);
        await CreateCustomerAsync(m);
        var first = (await receiver.WaitForAsync(r => r.Count >= 1)).Single();
        var deliveryId = await WaitForStatusAsync(m, webhookId, "delivered");

        var resent = await m.Client.PostJsonAsync($"/v1/webhooks/{webhookId}/deliveries/{deliveryId}/resend", new { });
        Assert.Equal(HttpStatusCode.Accepted, resent.Status);
        Assert.NotEqual(deliveryId, (string)resent.Body!["delivery_id"]!);
        var again = await receiver.WaitForAsync(r => r.Count >= 2);
        Assert.Equal(first.Id, again[1].Id);
        Assert.Equal(first.Body, again[1].Body);
        (await m.Client.PostJsonAsync($"/v1/webhooks/{webhookId}/deliveries/dlv_nope/resend", new { }))
            .AssertProblem(HttpStatusCode.NotFound, "not_found");
    }

    private static async Task<string> WaitForStatusAsync(LavaApp.Merchant m, string webhookId, string status)
    {
        for (var i = 0; i < 300; i++)
        {
            var log = (await m.Client.GetJsonAsync($"/v1/webhooks/{webhookId}/deliveries")).Body!["data"]!.AsArray();
            if (log.Count > 0 && (string)log[0]!["status"]! == status) return (string)log[0]!["delivery_id"]!;
            await Task.Delay(20);
        }
        throw new TimeoutException($"No delivery reached '{status}'.");
    }

    [Fact]
    public async Task AnEndpointThatAnswers410IsDisabledAndGetsNothingMoreUntilEnabled()
    {
        var m = await app.NewMerchantAsync();
        var receiver = NewReceiver();
        receiver.Answer = (context, _, index) =>
        {
            context.Response.StatusCode = index == 0 ? 410 : 200;
            return Task.CompletedTask;
        };
        var (webhookId, _) = await CreateWebhookAsync(m, receiver.Url);
        await CreateCustomerAsync(m);
        await receiver.WaitForAsync(r => r.Count >= 1);
        await Task.Delay(600);
        Assert.Single(receiver.Requests);
        var hook = (await m.Client.GetJsonAsync($"/v1/webhooks/{webhookId}")).Body!;
        Assert.Equal("disabled", (string)hook["status"]!);
        Assert.Contains("410", (string)hook["disabled_reason"]!);

        Assert.Equal("enabled", (string)(await m.Client.PatchJsonAsync($"/v1/webhooks/{webhookId}", new { status = "enabled" })).Body!["status"]!);
        await receiver.WaitForAsync(r => r.Count >= 2);
        await WaitForStatusAsync(m, webhookId, "delivered");
    }

    [Fact]
    public async Task A429WithRetryAfterIsRetriedNoSoonerThanItAsks()
    {
        var m = await app.NewMerchantAsync();
        var receiver = NewReceiver();
        receiver.Answer = (context, _, index) =>
        {
            context.Response.StatusCode = index == 0 ? 429 : 200;
            if (index == 0) context.Response.Headers.RetryAfter = "1";
            return Task.CompletedTask;
        };
        await CreateWebhookAsync(m, receiver.Url);
        await CreateCustomerAsync(m);
        var got = await receiver.WaitForAsync(r => r.Count >= 2);
        Assert.True(got[1].At - got[0].At >= TimeSpan.FromMilliseconds(950), $"retried after {(got[1].At - got[0].At).TotalMilliseconds} ms");
    }

    [Fact]
    public async Task DuringASecretsOverlapBothSecretsSignAndAfterwardsOnlyTheNewOne()
    {
        var m = await app.NewMerchantAsync();
        var receiver = NewReceiver();
        var (webhookId, oldSecret) = await CreateWebhookAsync(m, receiver.Url);
        var rolled = await m.Client.PostJsonAsync($"/v1/webhooks/{webhookId}/roll_secret", new { overlap_seconds = 3600 });
        Assert.Equal(HttpStatusCode.OK, rolled.Status);
        var newSecret = (string)rolled.Body!["webhook_secret"]!;
        Assert.NotEqual(oldSecret, newSecret);
        await CreateCustomerAsync(m);
        var during = (await receiver.WaitForAsync(r => r.Count >= 1))[0];
        Assert.True(WebhookReceiver.VerifiesStandardWebhooks(during, oldSecret));
        Assert.True(WebhookReceiver.VerifiesStandardWebhooks(during, newSecret));
        Assert.True(WebhookReceiver.VerifiesLava(during, newSecret));
        Assert.True(WebhookReceiver.VerifiesLava(during, oldSecret, "x-webhook-signature-previous"));

        await m.Client.PostJsonAsync($"/v1/webhooks/{webhookId}/roll_secret", new { overlap_seconds = 0 });
        var latest = (string)(await m.Client.PostJsonAsync($"/v1/webhooks/{webhookId}/roll_secret", new { overlap_seconds = 0 })).Body!["webhook_secret"]!;
        await CreateCustomerAsync(m, "Grace Hopper");
        var after = (await receiver.WaitForAsync(r => r.Count >= 2))[1];
        Assert.True(WebhookReceiver.VerifiesStandardWebhooks(after, latest));
        Assert.False(WebhookReceiver.VerifiesStandardWebhooks(after, newSecret));
        Assert.False(after.Headers.ContainsKey("x-webhook-signature-previous"));
    }

    [Fact]
    public async Task AnEndpointReceivesOnlyTheEventTypesItChose()
    {
        var m = await app.NewMerchantAsync();
        var receiver = NewReceiver();
        await CreateWebhookAsync(m, receiver.Url, new[] { "customer.deleted" });
        var customerId = await CreateCustomerAsync(m);
        Assert.Equal(HttpStatusCode.OK, (await m.Client.DeleteJsonAsync($"/v1/customers/{customerId}")).Status);
        var got = (await receiver.WaitForAsync(r => r.Count >= 1)).Single();
        Assert.Equal("customer.deleted", got.Event);
        Assert.Equal(customerId, (string)got.Json["data"]!["customer_id"]!);
        await Task.Delay(300);
        Assert.Single(receiver.Requests);
    }

    [Fact]
    public async Task ASlowEndpointOfOneMerchantDoesNotDelayAnotherMerchantsDeliveries()
    {
        var slowMerchant = await app.NewMerchantAsync("slow");
        var fastMerchant = await app.NewMerchantAsync("fast");
        var slow = NewReceiver();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        slow.Answer = async (context, _, _) =>
        {
            await Task.WhenAny(release.Task, Task.Delay(4000));
            context.Response.StatusCode = 200;
        };
        var fast = NewReceiver();
        await CreateWebhookAsync(slowMerchant, slow.Url);
        await CreateWebhookAsync(fastMerchant, fast.Url);
        for (var i = 0; i < 12; i++) await CreateCustomerAsync(slowMerchant, $"Slow {i}");
        await slow.WaitForAsync(r => r.Count >= 4);

        var started = DateTimeOffset.UtcNow;
        await CreateCustomerAsync(fastMerchant);
        var got = (await fast.WaitForAsync(r => r.Count >= 1, timeoutMs: 3000)).Single();
        Assert.True(got.At - started < TimeSpan.FromSeconds(1.5), $"took {(got.At - started).TotalMilliseconds} ms");
        // The slow endpoint never has more than its share in flight.
        Assert.True(slow.Requests.Count <= 4, $"{slow.Requests.Count} deliveries in flight to the slow endpoint");
        release.SetResult();
        await slow.WaitForAsync(r => r.Select(x => x.Id).Distinct().Count() >= 12);
    }

    private async Task<double> DeliveriesCountedAsync(string outcome, string status)
    {
        var scrape = await app.CreateClient().GetStringAsync(Lava.Billing.Infrastructure.Observability.Observability.Path);
        return scrape.Split('\n')
            .Where(l => l.StartsWith("lava_webhooks_deliveries_total{", StringComparison.Ordinal))
            .Where(l => l.Contains($"outcome=\"{outcome}\"", StringComparison.Ordinal) && l.Contains($"status=\"{status}\"", StringComparison.Ordinal))
            .Sum(l => double.Parse(l.Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task DeliveryAttemptsMoveTheWebhookMetrics()
    {
        var retryingBefore = await DeliveriesCountedAsync("retrying", "500");
        var deliveredBefore = await DeliveriesCountedAsync("delivered", "204");
        var m = await app.NewMerchantAsync();
        var receiver = NewReceiver();
        receiver.Answer = (context, _, index) =>
        {
            context.Response.StatusCode = index < 1 ? 500 : 204;
            return Task.CompletedTask;
        };
        await CreateWebhookAsync(m, receiver.Url);
        await CreateCustomerAsync(m);
        await receiver.WaitForAsync(r => r.Count >= 2);

        // Other test classes deliver too (the instruments are process-wide), so the counters move by at least these.
        await Task.Delay(500);
        Assert.True(await DeliveriesCountedAsync("retrying", "500") >= retryingBefore + 1);
        Assert.True(await DeliveriesCountedAsync("delivered", "204") >= deliveredBefore + 1);
    }
}
