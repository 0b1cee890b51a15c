using System.Net;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Requests;

public class ReportPricingTests(LavaApp app) : ApiTest(app)
{
    private async Task<(LavaApp.Merchant M, string Customer)> MerchantWithCustomerAsync()
    {
        var m = await App.NewMerchantAsync();
        return (m, await App.CustomerAsync(m.MerchantId));
    }

    private static object Report(string id, string? customer, string meter, object? extra = null)
    {
        var body = new Dictionary<string, object?> { ["request_id"] = id, ["meter_slug"] = meter };
        if (customer is not null) body["customer_id"] = customer;
        foreach (var p in extra?.GetType().GetProperties() ?? []) body[p.Name] = p.GetValue(extra);
        return body;
    }

    [Fact]
    public async Task ATokensReportIsPricedToTheTenthDecimalAndPosted()
    {
        var (m, customer) = await MerchantWithCustomerAsync();
        var meterId = await App.MeterAsync(m.MerchantId, "gpt", "fixed", "tokens_1m", (0, 5));

        var r = await m.Client.PostJsonAsync("/v1/requests", Report("r1", customer, "gpt", new { input_tokens = 1_000_000, output_tokens = 200_000 }));

        Assert.Equal(HttpStatusCode.Created, r.Status);
        var b = r.Body!;
        Assert.Equal("r1", (string)b["request_id"]!);
        Assert.Equal("completed", (string)b["status"]!);
        Assert.Equal(customer, (string)b["customer_id"]!);
        Assert.Equal(meterId, (string)b["meter_id"]!);
        Assert.Equal("6.0000000000", (string)b["charge"]!["amount"]!);
        Assert.Equal("fixed", (string)b["charge"]!["rate_type"]!);
        Assert.Equal(1_200_000, (long)b["model_usage"]!["total_tokens"]!);
        var line = b["charge"]!["breakdown"]![0]!;
        Assert.Equal(0, (decimal)line["tier"]!["start"]!);
        Assert.Equal("5.0000000000", (string)line["tier"]!["rate"]!);
        Assert.Equal("tokens_1m", (string)line["tier"]!["type"]!);
        Assert.Equal(1_200_000, (decimal)line["tokens"]!);
        Assert.Equal("6.0000000000", (string)line["cost"]!);
        Assert.Equal("6.0000000000", (string)b["customer_balance"]!["receivable"]!);

        Assert.Equal(6m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(customer)));
        Assert.Equal(-6m, await App.EntriesSumAsync(m.MerchantId, LedgerAccounts.UsageRevenue));
    }

    [Theory]
    [InlineData("characters_1m", "{\"input_characters\": 1000, \"output_characters\": 500}", "2", "0.0030000000")]
    [InlineData("minutes", "{\"input_seconds\": 60, \"output_seconds\": \"30.5\"}", "0.02", "0.0301666667")]
    [InlineData("requests", "{}", "0.01", "0.0100000000")]
    public async Task EachTierTypeIsPricedExactly(string tierType, string quantities, string rate, string expected)
    {
        var (m, customer) = await MerchantWithCustomerAsync();
        await App.MeterAsync(m.MerchantId, "m", "fixed", tierType, (0, decimal.Parse(rate, System.Globalization.CultureInfo.InvariantCulture)));
        var body = System.Text.Json.Nodes.JsonNode.Parse(quantities)!.AsObject();
        body["request_id"] = "r"; body["customer_id"] = customer; body["meter_slug"] = "m";

        var r = await m.Client.PostJsonAsync("/v1/requests", Http.Json(body.ToJsonString()));

        Assert.Equal(HttpStatusCode.Created, r.Status);
        Assert.Equal(expected, (string)r.Body!["charge"]!["amount"]!);
    }

    [Fact]
    public async Task GraduatedTiersAccumulateAcrossReportsInAPeriod()
    {
        var (m, customer) = await MerchantWithCustomerAsync();
        await App.MeterAsync(m.MerchantId, "grad", "fixed", "tokens_1m", (0, 5), (1_000_000, 3), (10_000_000, 1));

        var first = await m.Client.PostJsonAsync("/v1/requests", Report("a", customer, "grad", new { input_tokens = 5_000_000 }));
        var second = await m.Client.PostJsonAsync("/v1/requests", Report("b", customer, "grad", new { input_tokens = 6_000_000 }));

        Assert.Equal("17.0000000000", (string)first.Body!["charge"]!["amount"]!);
        Assert.Equal("16.0000000000", (string)second.Body!["charge"]!["amount"]!);
        var lines = second.Body["charge"]!["breakdown"]!.AsArray();
        Assert.Equal(2, lines.Count);
        Assert.Equal(("15.0000000000", 5_000_000m), ((string)lines[0]!["cost"]!, (decimal)lines[0]!["tokens"]!));
        Assert.Equal(("1.0000000000", 1_000_000m), ((string)lines[1]!["cost"]!, (decimal)lines[1]!["tokens"]!));
        Assert.Equal(33m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(customer)));
    }

    [Fact]
    public async Task SubscribingMidMonthStartsANewPeriodBackAtTheFirstTier()
    {
        var (m, customer) = await MerchantWithCustomerAsync();
        var meterId = await App.MeterAsync(m.MerchantId, "grad", "fixed", "tokens_1m", (0, 5), (1_000_000, 3), (10_000_000, 1));
        await m.Client.PostJsonAsync("/v1/requests", Report("before", customer, "grad", new { input_tokens = 6_000_000 }));
        var plan = await m.Client.PostJsonAsync("/v1/plans", new { name = "Pro", period_amount = "1", billing_interval = "month", meter_ids = new[] { meterId } });
        Assert.Equal(HttpStatusCode.Created, plan.Status);
        Assert.Equal(HttpStatusCode.Created, (await m.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = customer, plan_id = (string)plan.Body!["plan_id"]! })).Status);

        var after = await m.Client.PostJsonAsync("/v1/requests", Report("after", customer, "grad", new { input_tokens = 1_000_000 }));

        Assert.Equal(HttpStatusCode.Created, after.Status);
        Assert.Equal("5.0000000000", (string)after.Body!["charge"]!["amount"]!);
    }

    [Fact]
    public async Task EachCustomerHasItsOwnTierPosition()
    {
        var m = await App.NewMerchantAsync();
        var a = await App.CustomerAsync(m.MerchantId);
        var b = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "grad", "fixed", "tokens_1m", (0, 5), (1_000_000, 3));
        await m.Client.PostJsonAsync("/v1/requests", Report("a1", a, "grad", new { input_tokens = 2_000_000 }));
        var rb = await m.Client.PostJsonAsync("/v1/requests", Report("b1", b, "grad", new { input_tokens = 1_000_000 }));
        Assert.Equal("5.0000000000", (string)rb.Body!["charge"]!["amount"]!);
    }

    [Fact]
    public async Task AMeterOnlyReportIsPricedButChargesNobody()
    {
        var m = await App.NewMerchantAsync();
        var customer = await App.CustomerAsync(m.MerchantId);
        await App.MeterAsync(m.MerchantId, "grad", "fixed", "tokens_1m", (0, 5), (1_000_000, 3));

        var first = await m.Client.PostJsonAsync("/v1/requests", Report("a", null, "grad", new { input_tokens = 1_000_000 }));
        var second = await m.Client.PostJsonAsync("/v1/requests", Report("b", null, "grad", new { input_tokens = 1_000_000 }));
        var customers = await m.Client.PostJsonAsync("/v1/requests", Report("c", customer, "grad", new { input_tokens = 1_000_000 }));

        Assert.Equal(HttpStatusCode.Created, first.Status);
        Assert.Null(first.Body!["customer_id"]);
        Assert.Equal("meter_only", (string)first.Body["mode"]!);
        Assert.Equal("5.0000000000", (string)first.Body["charge"]!["amount"]!);
        Assert.Equal("3.0000000000", (string)second.Body!["charge"]!["amount"]!);   // meter-only usage accumulates per meter
        Assert.Equal("5.0000000000", (string)customers.Body!["charge"]!["amount"]!); // apart from the customer's
        Assert.Equal(-5m, await App.EntriesSumAsync(m.MerchantId, LedgerAccounts.UsageRevenue));
        Assert.Equal(3, await App.QueryAsync<long>("SELECT count(*) FROM ledger_transactions WHERE merchant_id = @m AND kind = 'usage'", new { m = m.MerchantId }));
    }

    [Fact]
    public async Task APercentageMeterChargesAShareOfTheProviderCost()
    {
        var (m, customer) = await MerchantWithCustomerAsync();
        await App.MeterAsync(m.MerchantId, "pct", "percentage", "tokens_1m", (0, 20));

        var r = await m.Client.PostJsonAsync("/v1/requests", Report("p", customer, "pct", new { input_tokens = 1000, cost = "0.5" }));

        Assert.Equal(HttpStatusCode.Created, r.Status);
        Assert.Equal("0.1000000000", (string)r.Body!["charge"]!["amount"]!);
        Assert.Equal("0.5000000000", (string)r.Body["cost"]!);
        Assert.Equal(0.5m, await App.EntriesSumAsync(m.MerchantId, LedgerAccounts.ProviderCost));
        Assert.Equal(-0.5m, await App.EntriesSumAsync(m.MerchantId, LedgerAccounts.ProviderPayable));
    }

    [Fact]
    public async Task APercentageMeterWithoutACostIsRefusedAndChangesNothing()
    {
        var (m, customer) = await MerchantWithCustomerAsync();
        await App.MeterAsync(m.MerchantId, "pct", "percentage", "tokens_1m", (0, 20));

        var body = (await m.Client.PostJsonAsync("/v1/requests", Report("p", customer, "pct", new { input_tokens = 1000 })))
            .AssertProblem(HttpStatusCode.BadRequest, "validation_failed");
        Assert.NotNull(body["errors"]!["cost"]);
        Assert.Equal(0, await App.QueryAsync<long>("SELECT count(*) FROM requests"));
    }

    [Fact]
    public async Task CreditsAreDrawnBeforeTheReceivable()
    {
        var (m, customer) = await MerchantWithCustomerAsync();
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 6));
        await App.GrantAsync(m.MerchantId, customer, 1m, "cycle");
        await App.GrantAsync(m.MerchantId, customer, 2m, "bundle");

        var r = await m.Client.PostJsonAsync("/v1/requests", Report("r", customer, "gpt"));

        Assert.Equal("0.0000000000", (string)r.Body!["customer_balance"]!["credits_remaining"]!);
        Assert.Equal("3.0000000000", (string)r.Body["customer_balance"]!["receivable"]!);
        Assert.Equal(0m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.CreditsCycle(customer)));
        Assert.Equal(0m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.CreditsBundle(customer)));
        Assert.Equal(3m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.Receivable(customer)));
        Assert.Equal(-6m, await App.EntriesSumAsync(m.MerchantId, LedgerAccounts.UsageRevenue));
    }

    [Fact]
    public async Task AReportIsNeverRefusedForLackOfCredits()
    {
        var (m, customer) = await MerchantWithCustomerAsync();
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1000));
        var r = await m.Client.PostJsonAsync("/v1/requests", Report("r", customer, "gpt"));
        Assert.Equal(HttpStatusCode.Created, r.Status);
        Assert.Equal("1000.0000000000", (string)r.Body!["customer_balance"]!["receivable"]!);
    }

    [Fact]
    public async Task TheOlderConnectionIdNameIsAcceptedForTheCustomer()
    {
        var (m, customer) = await MerchantWithCustomerAsync();
        await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        var r = await m.Client.PostJsonAsync("/v1/requests", new { request_id = "r", connection_id = customer, meter_slug = "gpt" });
        Assert.Equal(HttpStatusCode.Created, r.Status);
        Assert.Equal(customer, (string)r.Body!["customer_id"]!);
    }

    [Fact]
    public async Task TheRecordedPriceVersionFollowsTheMeter()
    {
        var (m, customer) = await MerchantWithCustomerAsync();
        var meterId = await App.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        var r = await m.Client.PostJsonAsync("/v1/requests", Report("r", customer, "gpt"));
        Assert.Equal(1, (int)r.Body!["price_version"]!);
        var txn = await App.QueryAsync<(string MeterId, int PriceVersion, string Reference)>(
            "SELECT meter_id, price_version, reference FROM ledger_transactions WHERE merchant_id = @m AND kind = 'usage'", new { m = m.MerchantId });
        Assert.Equal((meterId, 1, "r"), txn);
    }
}
