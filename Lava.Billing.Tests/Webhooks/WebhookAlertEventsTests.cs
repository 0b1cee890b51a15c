using System.Net;
using System.Text.Json;
using Lava.Billing.Requests;
using Lava.Billing.Requests.Posting;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Lava.Billing.Tests.Webhooks;

/// <summary>customer.balance.low, customer.credits.exhausted and hold.expired: once per crossing, with the change.</summary>
public class WebhookAlertEventsTests(WebhookApp app) : IClassFixture<WebhookApp>, IAsyncLifetime
{
    private readonly WebhookReceiver _receiver = new();
    private int _requests;

    public Task InitializeAsync() => app.ResetAsync();

    public async Task DisposeAsync() => await _receiver.DisposeAsync();

    /// <summary>A merchant with a 1-a-request meter and a customer holding <paramref name="credits"/>.</summary>
    private async Task<(LavaApp.Merchant M, string Customer)> ArrangeAsync(decimal credits, params string[] eventTypes)
    {
        var m = await app.NewMerchantAsync();
        var customer = await app.CustomerAsync(m.MerchantId);
        await app.MeterAsync(m.MerchantId, "calls", "fixed", "requests", (0, 1m));
        if (eventTypes.Length > 0) await WebhookDeliveryTests.CreateWebhookAsync(m, _receiver.Url, eventTypes);
        if (credits > 0) await app.GrantAsync(m.MerchantId, customer, credits);
        return (m, customer);
    }

    private async Task ReportAsync(LavaApp.Merchant m, string customer, int count = 1)
    {
        for (var i = 0; i < count; i++)
        {
            var r = await m.Client.PostJsonAsync("/v1/requests",
                new { request_id = $"r{Interlocked.Increment(ref _requests)}", customer_id = customer, meter_slug = "calls" });
            Assert.Equal(HttpStatusCode.Created, r.Status);
        }
    }

    private Task<long> EventsAsync(string merchantId, string type) => app.QueryAsync<long>(
        "SELECT count(*) FROM webhook_events WHERE merchant_id = @m AND type = @type", new { m = merchantId, type });

    [Fact]
    public async Task ALowBalanceEventFiresOncePerDownwardCrossingAndAgainAfterTheBalanceRoseAboveTheThreshold()
    {
        var (m, customer) = await ArrangeAsync(10m, "customer.balance.low");
        var set = await m.Client.SendAsync(HttpMethod.Put, $"/v1/customers/{customer}/balance_alert", new { low_balance_threshold = "7.5" });
        Assert.Equal(HttpStatusCode.OK, set.Status);
        Assert.False((bool)set.Body!["below_threshold"]!);

        await ReportAsync(m, customer, 2);
        Assert.Equal(0L, await EventsAsync(m.MerchantId, "customer.balance.low"));
        await ReportAsync(m, customer, 2);
        Assert.Equal(1L, await EventsAsync(m.MerchantId, "customer.balance.low"));
        await app.GrantAsync(m.MerchantId, customer, 5m);
        Assert.Equal(1L, await EventsAsync(m.MerchantId, "customer.balance.low"));
        await ReportAsync(m, customer, 4);

        Assert.Equal(2L, await EventsAsync(m.MerchantId, "customer.balance.low"));
        var got = await _receiver.WaitForAsync(r => r.Count >= 2);
        Assert.All(got, r => Assert.Equal("customer.balance.low", r.Event));
        Assert.Equal(["7.0000000000", "7.0000000000"], got.Select(r => (string)r.Json["data"]!["balance"]!["credits_remaining"]!));
        Assert.All(got, r => Assert.Equal("7.5000000000", (string)r.Json["data"]!["low_balance_threshold"]!));
        Assert.All(got, r => Assert.Equal(customer, (string)r.Json["data"]!["customer_id"]!));
    }

    [Fact]
    public async Task ABalanceAlreadyBelowTheNewThresholdIsNotAnnouncedUntilItCrossesAgain()
    {
        var (m, customer) = await ArrangeAsync(3m, "customer.balance.low");
        var set = await m.Client.SendAsync(HttpMethod.Put, $"/v1/customers/{customer}/balance_alert", new { low_balance_threshold = 5 });
        Assert.True((bool)set.Body!["below_threshold"]!);

        await ReportAsync(m, customer);

        Assert.Equal(0L, await EventsAsync(m.MerchantId, "customer.balance.low"));
    }

    [Fact]
    public async Task CreditsExhaustedFiresWhenCreditsReachZeroAndReArmsWhenCreditsReturn()
    {
        var (m, customer) = await ArrangeAsync(2m, "customer.credits.exhausted");

        await ReportAsync(m, customer);
        Assert.Equal(0L, await EventsAsync(m.MerchantId, "customer.credits.exhausted"));
        await ReportAsync(m, customer);
        Assert.Equal(1L, await EventsAsync(m.MerchantId, "customer.credits.exhausted"));
        await app.GrantAsync(m.MerchantId, customer, 1m);
        await ReportAsync(m, customer);

        Assert.Equal(2L, await EventsAsync(m.MerchantId, "customer.credits.exhausted"));
        var got = await _receiver.WaitForAsync(r => r.Count >= 2);
        Assert.All(got, r => Assert.Equal("0.0000000000", (string)r.Json["data"]!["balance"]!["credits_remaining"]!));
    }

    [Fact]
    public async Task ABatchCrossingBothLinesInOneTransactionWritesOneEventOfEachForTheCustomer()
    {
        var (m, customer) = await ArrangeAsync(5m, "customer.balance.low", "customer.credits.exhausted");
        await m.Client.SendAsync(HttpMethod.Put, $"/v1/customers/{customer}/balance_alert", new { low_balance_threshold = "2" });

        var items = Enumerable.Range(0, 5).Select(i => new ReportItem(m.MerchantId, JsonSerializer.Deserialize<CreateRequestBody>(
            JsonSerializer.Serialize(new { request_id = $"b{i}", customer_id = customer, meter_slug = "calls" }),
            Lava.Billing.Infrastructure.Http.LavaJson.Options)!)).ToList();
        var outcomes = await app.Services.GetRequiredService<ReportPoster>().PostAsync(items, CancellationToken.None);
        Assert.All(outcomes, o => Assert.IsType<ReportOutcome.Created>(o));

        Assert.Equal(1L, await EventsAsync(m.MerchantId, "customer.balance.low"));
        Assert.Equal(1L, await EventsAsync(m.MerchantId, "customer.credits.exhausted"));
    }

    [Fact]
    public async Task AMerchantWithoutAWebhookGetsNoAlertRowsOrEvents()
    {
        var (m, customer) = await ArrangeAsync(1m);

        await ReportAsync(m, customer);

        Assert.Equal(0L, await app.QueryAsync<long>("SELECT count(*) FROM webhook_events WHERE merchant_id = @m", new { m = m.MerchantId }));
        Assert.Equal(0L, await app.QueryAsync<long>("SELECT count(*) FROM customer_balance_alerts WHERE merchant_id = @m", new { m = m.MerchantId }));
    }

    [Fact]
    public async Task AHoldThatExpiresUnreleasedIsAnnouncedOnceAndAVoidedOneIsNot()
    {
        var (m, customer) = await ArrangeAsync(10m, "hold.expired");
        var expiring = await m.Client.PostJsonAsync("/v1/holds", new { customer_id = customer, amount = "2.5", expires_in = 1 });
        var voided = await m.Client.PostJsonAsync("/v1/holds", new { customer_id = customer, amount = "1", expires_in = 1 });
        Assert.Equal(HttpStatusCode.Created, expiring.Status);
        Assert.Equal(HttpStatusCode.OK, (await m.Client.DeleteJsonAsync($"/v1/holds/{(string)voided.Body!["hold_id"]!}")).Status);

        var got = (await _receiver.WaitForAsync(r => r.Count >= 1)).Single();
        Assert.Equal("hold.expired", got.Event);
        var holds = got.Json["data"]!["holds"]!.AsArray();
        Assert.Equal(customer, (string)got.Json["data"]!["customer_id"]!);
        Assert.Equal((string)expiring.Body!["hold_id"]!, (string)holds.Single()!["hold_id"]!);
        Assert.Equal("2.5000000000", (string)holds.Single()!["amount"]!);
        await Task.Delay(500);
        Assert.Equal(1L, await EventsAsync(m.MerchantId, "hold.expired"));
        Assert.Equal("expired", (string)(await m.Client.GetJsonAsync($"/v1/holds/{(string)expiring.Body["hold_id"]!}")).Body!["status"]!);
    }

    [Fact]
    public async Task TheThresholdIsValidatedAndAnotherMerchantsCustomerIsNotFound()
    {
        var (m, customer) = await ArrangeAsync(0m);
        var other = await app.NewMerchantAsync("Other");

        Assert.Equal(HttpStatusCode.NotFound, (await other.Client.SendAsync(HttpMethod.Put, $"/v1/customers/{customer}/balance_alert",
            new { low_balance_threshold = "1" })).Status);
        Assert.Equal(HttpStatusCode.NotFound, (await other.Client.GetJsonAsync($"/v1/customers/{customer}/balance_alert")).Status);
        Assert.Equal(HttpStatusCode.BadRequest, (await m.Client.SendAsync(HttpMethod.Put, $"/v1/customers/{customer}/balance_alert",
            new { low_balance_threshold = "0.00000000001" })).Status);
        Assert.Equal(HttpStatusCode.BadRequest, (await m.Client.SendAsync(HttpMethod.Put, $"/v1/customers/{customer}/balance_alert",
            new { low_balance_threshold = "1e30" })).Status);
        var cleared = await m.Client.SendAsync(HttpMethod.Put, $"/v1/customers/{customer}/balance_alert", new { low_balance_threshold = (string?)null });
        Assert.Equal(HttpStatusCode.OK, cleared.Status);
        Assert.Null(cleared.Body!["low_balance_threshold"]);
    }
}
