using System.Globalization;
using System.Net;
using System.Text.Json;
using Dapper;
using Lava.Billing.Requests;
using Lava.Billing.Requests.Posting;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Webhooks;

/// <summary>Events are written with their change, one per customer per transaction, and delivered in commit order.</summary>
public class WebhookOutboxTests(WebhookApp app) : IClassFixture<WebhookApp>, IAsyncLifetime
{
    private readonly WebhookReceiver _receiver = new();

    public Task InitializeAsync() => app.ResetAsync();

    public async Task DisposeAsync() => await _receiver.DisposeAsync();

    private Task<long> BalanceEventsAsync(string merchantId, string customerId) => app.QueryAsync<long>(
        "SELECT count(*) FROM webhook_events WHERE merchant_id = @m AND customer_id = @c AND type = 'customer.wallet.balance.updated'",
        new { m = merchantId, c = customerId });

    private static decimal Credits(WebhookReceiver.Received r) =>
        decimal.Parse((string)r.Json["data"]!["balance"]!["credits_remaining"]!, CultureInfo.InvariantCulture);

    [Fact]
    public async Task ABatchOfReportsWritesOneBalanceEventPerCustomerCarryingItsFinalBalance()
    {
        var m = await app.NewMerchantAsync();
        var customers = new[] { await app.CustomerAsync(m.MerchantId), await app.CustomerAsync(m.MerchantId) };
        await app.MeterAsync(m.MerchantId, "calls", "fixed", "requests", (0, 0.01m));
        foreach (var c in customers) await app.GrantAsync(m.MerchantId, c, 10m);
        await WebhookDeliveryTests.CreateWebhookAsync(m, _receiver.Url, new[] { "customer.wallet.balance.updated" });

        var items = Enumerable.Range(0, 100).Select(i => new ReportItem(m.MerchantId, JsonSerializer.Deserialize<CreateRequestBody>(
            JsonSerializer.Serialize(new { request_id = $"r{i}", customer_id = customers[i % 2], meter_slug = "calls" }),
            Lava.Billing.Infrastructure.Http.LavaJson.Options)!)).ToList();
        var outcomes = await app.Services.GetRequiredService<ReportPoster>().PostAsync(items, CancellationToken.None);
        Assert.All(outcomes, o => Assert.IsType<ReportOutcome.Created>(o));

        foreach (var c in customers) Assert.Equal(1L, await BalanceEventsAsync(m.MerchantId, c));
        var got = await _receiver.WaitForAsync(r => r.Count >= 2);
        Assert.Equal(customers.Order(), got.Select(r => (string)r.Json["data"]!["customer_id"]!).Order());
        Assert.All(got, r => Assert.Equal(9.5m, Credits(r)));
    }

    [Fact]
    public async Task ARolledBackChangeLeavesNoEventAndACommittedOneLeavesExactlyOne()
    {
        var m = await app.NewMerchantAsync();
        await WebhookDeliveryTests.CreateWebhookAsync(m, _receiver.Url);
        await using (var c = new NpgsqlConnection(app.ConnectionString))
        {
            await c.OpenAsync();
            await using var tx = await c.BeginTransactionAsync();
            await c.ExecuteAsync("INSERT INTO customers (merchant_id, customer_id) VALUES (@m, 'cus_rolled_back')", new { m = m.MerchantId }, tx);
            await tx.RollbackAsync();
        }
        var customerId = await app.CustomerAsync(m.MerchantId);
        Assert.Equal(0L, await app.QueryAsync<long>("SELECT count(*) FROM webhook_events WHERE customer_id = 'cus_rolled_back'"));
        Assert.Equal(1L, await app.QueryAsync<long>("SELECT count(*) FROM webhook_events WHERE customer_id = @c", new { c = customerId }));
    }

    [Fact]
    public async Task BalanceEventsOfOneCustomerArriveInCommitOrderUnderConcurrentReports()
    {
        var m = await app.NewMerchantAsync();
        var customerId = await app.CustomerAsync(m.MerchantId);
        await app.MeterAsync(m.MerchantId, "calls", "fixed", "requests", (0, 0.01m));
        await app.GrantAsync(m.MerchantId, customerId, 10m);
        await WebhookDeliveryTests.CreateWebhookAsync(m, _receiver.Url, new[] { "customer.wallet.balance.updated" });
        // The first delivery hangs until every report has committed and then fails: later events of the customer are
        // due meanwhile, and would overtake it if the line were not kept.
        var reported = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _receiver.Answer = async (context, _, index) =>
        {
            if (index == 0) await reported.Task.WaitAsync(TimeSpan.FromSeconds(10));
            await Task.Delay(index % 3 == 0 ? 30 : 0);
            context.Response.StatusCode = index == 0 ? 500 : 200;
        };

        // Two waves of 20 concurrent reports, the second sent once the first has committed: group commit may put a whole
        // wave in one transaction (on a busy machine it put all 40 in one), and the line is only tested across commits.
        foreach (var wave in new[] { 0, 20 })
        {
            var reports = Enumerable.Range(wave, 20).Select(i => Task.Run(() =>
                m.Client.PostJsonAsync("/v1/requests", new { request_id = $"r{i}", customer_id = customerId, meter_slug = "calls" })));
            Assert.All(await Task.WhenAll(reports), r => Assert.Equal(HttpStatusCode.Created, r.Status));
        }
        await Task.Delay(300);
        reported.SetResult();
        var events = await BalanceEventsAsync(m.MerchantId, customerId);
        Assert.True(events >= 2, $"only {events} balance events: the reports did not commit apart");

        var got = (await _receiver.WaitForAsync(r => r.Count >= events + 1)).Skip(1).ToList();
        var credits = got.Select(Credits).ToList();
        Assert.Equal(credits.OrderDescending(), credits);
        Assert.Equal(credits.Count, credits.Distinct().Count());
        Assert.Equal(9.6m, credits[^1]);
        var seqs = got.Select(r => long.Parse(r.Id["evt_".Length..], CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(seqs.Order(), seqs);
    }
}

/// <summary>An event committed while no dispatcher runs is delivered by the next instance on the same database.</summary>
public class WebhookRestartTests(UndispatchedWebhookApp app) : IClassFixture<UndispatchedWebhookApp>, IAsyncLifetime
{
    private readonly WebhookReceiver _receiver = new();

    public Task InitializeAsync() => app.ResetAsync();

    public async Task DisposeAsync() => await _receiver.DisposeAsync();

    [Fact]
    public async Task AnEventCommittedBeforeTheServiceStoppedIsDeliveredAfterItStartsAgain()
    {
        var m = await app.NewMerchantAsync();
        await WebhookDeliveryTests.CreateWebhookAsync(m, _receiver.Url);
        var customerId = (string)(await m.Client.PostJsonAsync("/v1/customers", new { name = "Ada" })).Body!["customer_id"]!;
        await Task.Delay(300);
        Assert.Empty(_receiver.Requests);

        await using var restarted = app.WithWebHostBuilder(b => b.UseSetting("Webhooks:Dispatch", "true"));
        _ = restarted.Services;
        var got = (await _receiver.WaitForAsync(r => r.Count >= 1)).Single();
        Assert.Equal("customer.created", got.Event);
        Assert.Equal(customerId, (string)got.Json["data"]!["customer_id"]!);
    }
}
