using System.Net;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Requests;

public class ReportIdempotencyTests(LavaApp app) : ApiTest(app)
{
    private async Task<(LavaApp.Merchant M, string Customer)> ArrangeAsync()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "tokens_1m", (0, 5), (1_000_000, 3));
        return (m, customer);
    }

    private Task<long> CountAsync(string table, string merchantId) =>
        App.QueryAsync<long>($"SELECT count(*) FROM {table} WHERE merchant_id = @m", new { m = merchantId });

    [Fact]
    public async Task ReplayingAReportReturnsTheOriginalResponseAndPostsNothing()
    {
        var (m, customer) = await ArrangeAsync();
        var body = new { request_id = "r1", customer_id = customer, meter_slug = "gpt", input_tokens = 10, metadata = new { a = "1", b = "2" } };
        var first = await m.Client.PostJsonAsync("/v1/requests", body);
        // Same report, other member order and metadata order: same canonical payload.
        var again = await m.Client.PostJsonAsync("/v1/requests", new { metadata = new { b = "2", a = "1" }, input_tokens = 10, meter_slug = "gpt", customer_id = customer, request_id = "r1" });

        Assert.Equal(HttpStatusCode.Created, again.Status);
        Assert.Equal(first.Body!.ToJsonString(), again.Body!.ToJsonString());
        Assert.Equal("true", again.Response.Headers.GetValues("Idempotent-Replayed").Single());
        Assert.False(first.Response.Headers.Contains("Idempotent-Replayed"));
        Assert.Equal(1, await CountAsync("ledger_transactions", m.MerchantId));
    }

    [Fact]
    public async Task ReplayingAReportWithADifferentBodyReturns409()
    {
        var (m, customer) = await ArrangeAsync();
        await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r1", customer_id = customer, meter_slug = "gpt", input_tokens = 10 });
        var receivable = await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(customer));

        (await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r1", customer_id = customer, meter_slug = "gpt", input_tokens = 11 }))
            .AssertProblem(HttpStatusCode.Conflict, "idempotency_conflict");

        Assert.Equal(1, await CountAsync("requests", m.MerchantId));
        Assert.Equal(receivable, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(customer)));
    }

    [Fact]
    public async Task TheSameRequestIdUnderAnotherMerchantIsAnotherReport()
    {
        var (a, ca) = await ArrangeAsync();
        var (b, cb) = await ArrangeAsync();
        Assert.Equal(HttpStatusCode.Created, (await a.Client.PostJsonAsync("/v1/requests", new { request_id = "same", customer_id = ca, meter_slug = "gpt" })).Status);
        Assert.Equal(HttpStatusCode.Created, (await b.Client.PostJsonAsync("/v1/requests", new { request_id = "same", customer_id = cb, meter_slug = "gpt" })).Status);
    }

    [Fact]
    public async Task TwentyConcurrentIdenticalReportsPostOnce()
    {
        var (m, customer) = await ArrangeAsync();
        var body = new { request_id = "dup", customer_id = customer, meter_slug = "gpt", input_tokens = 2_000_000 };
        var clients = Enumerable.Range(0, 20).Select(_ => App.ClientWithKey(m.SecretKey)).ToList();

        var results = await Task.WhenAll(clients.Select(c => c.PostJsonAsync("/v1/requests", body)));

        Assert.All(results, r => Assert.Equal(HttpStatusCode.Created, r.Status));
        Assert.Single(results.Select(r => r.Body!.ToJsonString()).Distinct());
        Assert.Equal(19, results.Count(r => r.Response.Headers.Contains("Idempotent-Replayed")));
        Assert.Equal(1, await CountAsync("requests", m.MerchantId));
        Assert.Equal(1, await CountAsync("ledger_transactions", m.MerchantId));
        Assert.Equal(8m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(customer)));
        Assert.Equal(2_000_000m, await App.QueryAsync<decimal>("SELECT sum(quantity) FROM usage_totals WHERE merchant_id = @m", new { m = m.MerchantId }));
    }

    [Fact]
    public async Task ConcurrentDifferentPayloadsUnderOneIdLetOneWinAndRefuseTheRest()
    {
        var (m, customer) = await ArrangeAsync();
        var results = await Task.WhenAll(Enumerable.Range(1, 10).Select(i =>
            App.ClientWithKey(m.SecretKey).PostJsonAsync("/v1/requests", new { request_id = "race", customer_id = customer, meter_slug = "gpt", input_tokens = i })));

        var outcomes = string.Join(", ", results.Select(r => $"{(int)r.Status} {r.Body?["error"]?["code"]}"));
        Assert.True(results.Count(r => r.Status == HttpStatusCode.Created) == 1, outcomes);
        Assert.True(results.Count(r => r.Status == HttpStatusCode.Conflict && (string)r.Body!["error"]!["code"]! == "idempotency_conflict") == 9, outcomes);
        Assert.Equal(1, await CountAsync("ledger_transactions", m.MerchantId));
    }

    [Fact]
    public async Task AReplayAfterTheMeterWasDeletedStillAnswersTheOriginal()
    {
        var (m, customer) = await ArrangeAsync();
        var body = new { request_id = "r", customer_id = customer, meter_slug = "gpt", input_tokens = 1 };
        var first = await m.Client.PostJsonAsync("/v1/requests", body);
        await App.QueryAsync<int>("UPDATE meters SET deleted_at = now() WHERE merchant_id = @m RETURNING 1", new { m = m.MerchantId });
        var again = await m.Client.PostJsonAsync("/v1/requests", body);
        Assert.Equal(HttpStatusCode.Created, again.Status);
        Assert.Equal(first.Body!.ToJsonString(), again.Body!.ToJsonString());
    }
}
