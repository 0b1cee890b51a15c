using System.Net;
using System.Text.Json.Nodes;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Requests;

public class ReportBatchTests(LavaApp app) : ApiTest(app)
{
    private async Task<(LavaApp.Merchant M, string A, string B)> ArrangeAsync()
    {
        var m = await App.NewMerchantAsync();
        var a = await App.CustomerAsync(m.MerchantId);
        var b = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "tokens_1m", (0, 5), (1_000_000, 3));
        return (m, a, b);
    }

    private static object Batch(params object[] items) => new { requests = items };

    private Task<long> CountAsync(string table, string merchantId) =>
        App.QueryAsync<long>($"SELECT count(*) FROM {table} WHERE merchant_id = @m", new { m = merchantId });

    private static JsonArray Outcomes((HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response) r)
    {
        Assert.True(r.Status == HttpStatusCode.OK, $"{(int)r.Status}: {r.Body?.ToJsonString()}");
        return r.Body!["data"]!.AsArray();
    }

    private static string[] Statuses(JsonArray outcomes) => outcomes.Select(o => (string)o!["status"]!).ToArray();

    [Fact]
    public async Task EachReportIsPostedAndAnsweredInTheOrderSent()
    {
        var (m, a, b) = await ArrangeAsync();

        var outcomes = Outcomes(await m.Client.PostJsonAsync("/v1/requests/batch", Batch(
            new { request_id = "r1", customer_id = a, meter_slug = "gpt", input_tokens = 1_000_000 },
            new { request_id = "r2", customer_id = b, meter_slug = "gpt", input_tokens = 200_000 },
            new { request_id = "r3", connection_id = a, meter_slug = "gpt", input_tokens = 1_000_000 })));

        Assert.Equal(["created", "created", "created"], Statuses(outcomes));
        Assert.Equal([0, 1, 2], outcomes.Select(o => (int)o!["index"]!));
        Assert.Equal(["r1", "r2", "r3"], outcomes.Select(o => (string)o!["request_id"]!));
        Assert.Equal(["5.0000000000", "1.0000000000", "3.0000000000"], outcomes.Select(o => (string)o!["request"]!["charge"]!["amount"]!));
        Assert.All(outcomes, o => Assert.Null(o!["error"]));
        Assert.Equal(8m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(a)));
        Assert.Equal(3, await CountAsync("ledger_transactions", m.MerchantId));

        // Each report is stored as its own report: retrieving it answers what the batch answered for it.
        var stored = await m.Client.GetJsonAsync("/v1/requests/r2");
        Assert.Equal(outcomes[1]!["request"]!.ToJsonString(), stored.Body!.ToJsonString());
    }

    [Fact]
    public async Task OneBadItemNeverFailsTheOthers()
    {
        var (m, a, _) = await ArrangeAsync();

        var outcomes = Outcomes(await m.Client.PostJsonAsync("/v1/requests/batch", Http.Json($$"""
            {"requests": [
              {"request_id": "ok1", "customer_id": "{{a}}", "meter_slug": "gpt", "input_tokens": 10},
              {"request_id": "neg", "customer_id": "{{a}}", "meter_slug": "gpt", "input_tokens": -1},
              {"request_id": "type", "customer_id": "{{a}}", "meter_slug": "gpt", "input_tokens": "many"},
              42,
              {"request_id": "who", "customer_id": "cus_nobody", "meter_slug": "gpt"},
              {"request_id": "what", "customer_id": "{{a}}", "meter_slug": "no-such-meter"},
              {"request_id": "ok2", "customer_id": "{{a}}", "meter_slug": "gpt", "input_tokens": 20}
            ]}
            """)));

        Assert.Equal(["created", "invalid", "invalid", "invalid", "not_found", "not_found", "created"], Statuses(outcomes));
        Assert.Equal("validation_failed", (string)outcomes[1]!["error"]!["error"]!["code"]!);
        Assert.NotNull(outcomes[1]!["error"]!["errors"]!["input_tokens"]);
        Assert.Equal("invalid_json", (string)outcomes[2]!["error"]!["error"]!["code"]!);
        Assert.NotNull(outcomes[2]!["error"]!["errors"]!["input_tokens"]);
        Assert.Equal("type", (string)outcomes[2]!["request_id"]!);
        Assert.Null(outcomes[3]!["request_id"]);
        Assert.Equal(400, (int)outcomes[3]!["error"]!["status"]!);
        Assert.Equal(404, (int)outcomes[4]!["error"]!["status"]!);
        Assert.All(outcomes.Where(o => (string)o!["status"]! != "created"), o => Assert.Null(o!["request"]));
        Assert.Equal(2, await CountAsync("requests", m.MerchantId));
        Assert.Equal(2, await CountAsync("ledger_transactions", m.MerchantId));
    }

    [Fact]
    public async Task ReplaysAndConflictsAreAnsweredPerItemAndPostNothing()
    {
        var (m, a, _) = await ArrangeAsync();
        var first = await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r1", customer_id = a, meter_slug = "gpt", input_tokens = 10 });

        var outcomes = Outcomes(await m.Client.PostJsonAsync("/v1/requests/batch", Batch(
            new { request_id = "r1", customer_id = a, meter_slug = "gpt", input_tokens = 10 },
            new { request_id = "r1", customer_id = a, meter_slug = "gpt", input_tokens = 11 },
            new { request_id = "r2", customer_id = a, meter_slug = "gpt", input_tokens = 5 },
            new { request_id = "r2", customer_id = a, meter_slug = "gpt", input_tokens = 5 })));

        Assert.Equal(["replayed", "conflict", "created", "replayed"], Statuses(outcomes));
        Assert.Equal(first.Body!.ToJsonString(), outcomes[0]!["request"]!.ToJsonString());
        Assert.Equal("idempotency_conflict", (string)outcomes[1]!["error"]!["error"]!["code"]!);
        Assert.Equal(outcomes[2]!["request"]!.ToJsonString(), outcomes[3]!["request"]!.ToJsonString());
        Assert.Equal(2, await CountAsync("ledger_transactions", m.MerchantId));
    }

    [Fact]
    public async Task ARefusalOtherThanTheNamedOnesIsRefusedWithItsProblem()
    {
        var (m, a, _) = await ArrangeAsync();

        // Billing disabled needs the meter on the customer's active plan; this customer has no plan (403 alone).
        var outcomes = Outcomes(await m.Client.PostJsonAsync("/v1/requests/batch", Batch(
            new { request_id = "free", customer_id = a, meter_slug = "gpt", input_tokens = 10, disable_billing = true },
            new { request_id = "paid", customer_id = a, meter_slug = "gpt", input_tokens = 10 })));

        Assert.Equal(["refused", "created"], Statuses(outcomes));
        Assert.Equal("meter_not_on_plan", (string)outcomes[0]!["error"]!["error"]!["code"]!);
        Assert.Equal(403, (int)outcomes[0]!["error"]!["status"]!);
        Assert.Equal(1, await CountAsync("requests", m.MerchantId));
    }

    [Fact]
    public async Task TheFirstOfTwoItemsSharingARequestIdIsTheOnePosted()
    {
        var (m, a, b) = await ArrangeAsync();

        // Different customers, so nothing but the order sent decides which one takes the id.
        var outcomes = Outcomes(await m.Client.PostJsonAsync("/v1/requests/batch", Batch(
            new { request_id = "same", customer_id = a, meter_slug = "gpt", input_tokens = 100 },
            new { request_id = "same", customer_id = b, meter_slug = "gpt", input_tokens = 200 })));

        Assert.Equal(["created", "conflict"], Statuses(outcomes));
        Assert.Equal(a, (string)outcomes[0]!["request"]!["customer_id"]!);
        Assert.Equal(0m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(b)));
    }

    [Fact]
    public async Task OneCustomersReportsPostInTheOrderSentAcrossTiersAndCredits()
    {
        var m = await App.NewMerchantAsync();
        var customers = new List<string>();
        for (var i = 0; i < 4; i++) customers.Add(await App.CustomerAsync(m.MerchantId));
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "tokens_1m", (0, 5), (1_000_000, 3));
        foreach (var c in customers) await App.GrantAsync(m.MerchantId, c, 4m);
        // Interleaved, and more than one database transaction's worth, so order must hold within and across them.
        var items = Enumerable.Range(0, 4 * 75).Select(i => new
        {
            request_id = $"r{i}", customer_id = customers[i % 4], meter_slug = "gpt", input_tokens = 500_000,
        }).ToArray();

        var outcomes = Outcomes(await m.Client.PostJsonAsync("/v1/requests/batch", Batch(items)));

        foreach (var c in customers)
        {
            var mine = outcomes.Where(o => (string)o!["request"]!["customer_id"]! == c).Select(o => o!["request"]!).ToList();
            // 500k tokens: 2.50 twice in the first tier, then 1.50; the 4.00 of credits go first.
            Assert.Equal(["2.5000000000", "2.5000000000", .. Enumerable.Repeat("1.5000000000", 73)], mine.Select(r => (string)r["charge"]!["amount"]!));
            Assert.Equal(["1.5000000000", "0.0000000000", "0.0000000000"], mine.Take(3).Select(r => (string)r["customer_balance"]!["credits_remaining"]!));
            Assert.Equal(["0.0000000000", "1.0000000000", "2.5000000000", "4.0000000000"],
                mine.Take(4).Select(r => (string)r["customer_balance"]!["receivable"]!));
            Assert.Equal(110.5m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(c)));
            var receivables = mine.Select(r => decimal.Parse((string)r["customer_balance"]!["receivable"]!, System.Globalization.CultureInfo.InvariantCulture)).ToList();
            Assert.True(receivables.Zip(receivables.Skip(1)).All(p => p.Second > p.First), "the receivable grows report after report");
        }
    }

    [Fact]
    public async Task MoreThanAThousandReportsIs413AndPostsNothing()
    {
        var (m, a, _) = await ArrangeAsync();
        var items = Enumerable.Range(0, 1_001).Select(i => new { request_id = $"r{i}", customer_id = a, meter_slug = "gpt" }).ToArray();

        (await m.Client.PostJsonAsync("/v1/requests/batch", Batch(items))).AssertProblem(HttpStatusCode.RequestEntityTooLarge, "batch_too_large");

        Assert.Equal(0, await CountAsync("requests", m.MerchantId));
    }

    [Theory]
    [InlineData("{}")]
    [InlineData("{\"requests\": []}")]
    [InlineData("{\"requests\": null}")]
    public async Task AMissingOrEmptyListIs400(string json)
    {
        var (m, _, _) = await ArrangeAsync();
        var body = (await m.Client.PostJsonAsync("/v1/requests/batch", Http.Json(json))).AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.NotNull(body["errors"]!["requests"]);
    }

    [Fact]
    public async Task AListOfTheWrongTypeIs400()
    {
        var (m, _, _) = await ArrangeAsync();
        (await m.Client.PostJsonAsync("/v1/requests/batch", Http.Json("{\"requests\": {\"request_id\": \"r\"}}")))
            .AssertProblem(HttpStatusCode.BadRequest, "invalid_json");
    }

    [Fact]
    public async Task AThousandReportsAboveTheDefaultBodyLimitAreAccepted()
    {
        var (m, a, b) = await ArrangeAsync();
        var note = new string('x', 250);
        var items = Enumerable.Range(0, 1_000).Select(i => new
        {
            request_id = $"r{i}", customer_id = i % 2 == 0 ? a : b, meter_slug = "gpt", input_tokens = 1_000,
            metadata = new { note, run = $"{i}", k1 = note, k2 = note, k3 = note, k4 = note },
        }).ToArray();
        var json = System.Text.Json.JsonSerializer.Serialize(new { requests = items });
        Assert.True(json.Length > 1024 * 1024, "the batch must exceed the default 1 MiB body limit");

        var outcomes = Outcomes(await m.Client.PostJsonAsync("/v1/requests/batch", Http.Json(json)));

        Assert.All(outcomes, o => Assert.Equal("created", (string)o!["status"]!));
        Assert.Equal(1_000, await CountAsync("requests", m.MerchantId));
        Assert.Equal(2.5m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(a)));
    }

    [Fact]
    public async Task ABodyAboveFourMebibytesIs413()
    {
        var (m, a, _) = await ArrangeAsync();
        var pad = new string('x', 255);
        var metadata = Enumerable.Range(0, 20).ToDictionary(k => $"k{k}", _ => pad);
        var items = Enumerable.Range(0, 1_000).Select(i => new { request_id = $"r{i}", customer_id = a, meter_slug = "gpt", metadata }).ToArray();

        (await m.Client.PostJsonAsync("/v1/requests/batch", Batch(items))).AssertProblem(HttpStatusCode.RequestEntityTooLarge, "payload_too_large");

        Assert.Equal(0, await CountAsync("requests", m.MerchantId));
    }

    [Fact]
    public async Task TwoConcurrentIdenticalBatchesPostEachReportOnce()
    {
        var (m, a, b) = await ArrangeAsync();
        var items = Enumerable.Range(0, 60).Select(i => new
        {
            request_id = $"r{i}", customer_id = i % 3 == 0 ? a : b, meter_slug = "gpt", input_tokens = 100_000,
        }).ToArray();

        var responses = await Task.WhenAll(Enumerable.Range(0, 2).Select(_ =>
            App.ClientWithKey(m.SecretKey).PostJsonAsync("/v1/requests/batch", Batch(items))));

        var (first, second) = (Outcomes(responses[0]), Outcomes(responses[1]));
        for (var i = 0; i < items.Length; i++)
        {
            Assert.Equal(["created", "replayed"], new[] { (string)first[i]!["status"]!, (string)second[i]!["status"]! }.Order());
            Assert.Equal(first[i]!["request"]!.ToJsonString(), second[i]!["request"]!.ToJsonString());
        }
        Assert.Equal(60, await CountAsync("ledger_transactions", m.MerchantId));
        Assert.Equal(8m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(a)));
    }
}
