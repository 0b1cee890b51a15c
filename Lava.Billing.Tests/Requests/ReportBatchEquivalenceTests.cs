using System.Net;
using System.Text.Json.Nodes;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Requests;

/// <summary>
/// A batch leaves the ledger exactly as the same reports sent one by one: two merchants with the same customers, meters
/// and grants get the same random workload (new reports, replays, conflicts, bad items), one as batches, one as single
/// calls, and everything a user can see is compared.
/// </summary>
public class ReportBatchEquivalenceTests(LavaApp app) : ApiTest(app)
{
    private const int Customers = 6;

    private sealed record Tenant(LavaApp.Merchant M, string[] CustomerIds);

    /// <summary>A report with its customer as an index (-1: none, meter-only; 99: a customer that does not exist).</summary>
    private sealed record Report(string RequestId, int Customer, string MeterSlug, long InputTokens, long OutputTokens, string? Cost, bool Alias);

    private async Task<Tenant> TenantAsync(decimal[] cycleGrants, decimal[] bundleGrants)
    {
        var m = await App.NewMerchantAsync();
        var ids = new string[Customers];
        for (var i = 0; i < Customers; i++)
        {
            ids[i] = await App.CustomerAsync(m.MerchantId);
            if (cycleGrants[i] > 0) await App.GrantAsync(m.MerchantId, ids[i], cycleGrants[i], "cycle");
            if (bundleGrants[i] > 0) await App.GrantAsync(m.MerchantId, ids[i], bundleGrants[i], "bundle");
        }
        await App.MeterAsync(m.MerchantId, "tok", "fixed", "tokens_1m", (0, 5), (1_000_000, 3), (5_000_000, 1.5m));
        await App.MeterAsync(m.MerchantId, "pct", "percentage", "tokens_1m", (0, 20), (2_000_000, 12.5m));
        await App.MeterAsync(m.MerchantId, "req", "fixed", "requests", (0, 0.01m), (20, 0.0033333333m));
        return new Tenant(m, ids);
    }

    private static List<Report> Workload(Random rnd, int count)
    {
        var reports = new List<Report>(count);
        string[] meters = ["tok", "pct", "req"];
        for (var i = 0; i < count; i++)
        {
            var roll = rnd.Next(100);
            Report? earlier = reports.Count > 0 ? reports[rnd.Next(reports.Count)] : null;
            reports.Add(roll switch
            {
                < 12 when earlier is not null => earlier,                                                   // replay
                < 18 when earlier is not null => earlier with { InputTokens = earlier.InputTokens + 1 },    // conflict
                < 22 => new Report($"r{i}", rnd.Next(Customers), "tok", -5, 0, null, false),                 // invalid
                < 25 => new Report($"r{i}", 99, "tok", 10, 0, null, false),                                  // unknown customer
                < 27 => new Report($"r{i}", rnd.Next(Customers), "gone", 10, 0, null, false),                // unknown meter
                < 30 => new Report($"r{i}", rnd.Next(Customers), "pct", 10, 0, null, false),                 // percentage without cost
                _ => NewReport($"r{i}"),
            });
        }
        return reports;

        Report NewReport(string id)
        {
            var meter = meters[rnd.Next(meters.Length)];
            var customer = rnd.Next(10) == 0 ? -1 : rnd.Next(Customers);
            var cost = meter == "pct" || rnd.Next(4) == 0 ? (rnd.Next(0, 5_000_000) / 1_000_000m).ToString(System.Globalization.CultureInfo.InvariantCulture) : null;
            return new Report(id, customer, meter, rnd.NextInt64(0, 2_000_000), rnd.NextInt64(0, 500_000), cost, rnd.Next(8) == 0);
        }
    }

    private static Dictionary<string, object?> Body(Report r, Tenant t, DateTimeOffset at)
    {
        var body = new Dictionary<string, object?>
        {
            ["request_id"] = r.RequestId, ["meter_slug"] = r.MeterSlug, ["input_tokens"] = r.InputTokens,
            ["output_tokens"] = r.OutputTokens, ["timestamp"] = at, ["metadata"] = new Dictionary<string, string> { ["n"] = r.RequestId },
        };
        if (r.Customer >= 0) body[r.Alias ? "connection_id" : "customer_id"] = r.Customer < Customers ? t.CustomerIds[r.Customer] : "cus_missing";
        if (r.Cost is not null) body["cost"] = r.Cost;
        return body;
    }

    private static string StatusOf((HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response) single) => single.Status switch
    {
        HttpStatusCode.Created => single.Response.Headers.Contains("Idempotent-Replayed") ? "replayed" : "created",
        HttpStatusCode.Conflict => "conflict",
        HttpStatusCode.BadRequest => "invalid",
        HttpStatusCode.NotFound => "not_found",
        var other => $"unexpected {(int)other}",
    };

    /// <summary>What a user sees of a report's effect: its charge, the customer's position after it, its lines.</summary>
    private static string Effect(JsonNode request) =>
        new JsonObject
        {
            ["charge"] = request["charge"]!.DeepClone(),
            ["customer_balance"] = request["customer_balance"]?.DeepClone(),
            ["mode"] = request["mode"]!.DeepClone(),
        }.ToJsonString();

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task ABatchPostsWhatTheSameReportsSentOneByOneWouldPost(int seed)
    {
        var rnd = new Random(seed);
        var cycle = Enumerable.Range(0, Customers).Select(_ => rnd.Next(3) == 0 ? 0m : rnd.Next(1, 2_000) / 100m).ToArray();
        var bundle = Enumerable.Range(0, Customers).Select(_ => rnd.Next(2) == 0 ? 0m : rnd.Next(1, 1_000) / 100m).ToArray();
        var batched = await TenantAsync(cycle, bundle);
        var single = await TenantAsync(cycle, bundle);
        var workload = Workload(rnd, 400);
        // One timestamp for all, so both merchants' reports fall in the same usage period whenever the test runs.
        var at = DateTimeOffset.UtcNow.AddMinutes(-1);

        var batchStatuses = new List<string>();
        var batchEffects = new List<string?>();
        foreach (var chunk in workload.Chunk(150))
        {
            var r = await batched.M.Client.PostJsonAsync("/v1/requests/batch", new { requests = chunk.Select(x => Body(x, batched, at)) });
            Assert.True(r.Status == HttpStatusCode.OK, r.Body?.ToJsonString());
            foreach (var o in r.Body!["data"]!.AsArray())
            {
                batchStatuses.Add((string)o!["status"]!);
                batchEffects.Add(o["request"] is { } req ? Effect(req) : null);
            }
        }
        var singleStatuses = new List<string>();
        var singleEffects = new List<string?>();
        foreach (var report in workload)
        {
            var r = await single.M.Client.PostJsonAsync("/v1/requests", Body(report, single, at));
            singleStatuses.Add(StatusOf(r));
            singleEffects.Add(r.Status == HttpStatusCode.Created ? Effect(r.Body!) : null);
        }

        Assert.Equal(singleStatuses, batchStatuses);
        Assert.Contains("created", batchStatuses);
        Assert.Contains("replayed", batchStatuses);
        Assert.Contains("conflict", batchStatuses);
        Assert.Equal(singleEffects, batchEffects);

        Assert.Equal(await ChargesAsync(single.M.MerchantId), await ChargesAsync(batched.M.MerchantId));
        foreach (var account in new[] { LedgerAccounts.UsageRevenue, LedgerAccounts.ProviderCost, LedgerAccounts.ProviderPayable })
            Assert.Equal(await App.EntriesSumAsync(single.M.MerchantId, account), await App.EntriesSumAsync(batched.M.MerchantId, account));
        for (var c = 0; c < Customers; c++)
        {
            foreach (var account in new Func<string, string>[] { LedgerAccounts.CreditsCycle, LedgerAccounts.CreditsBundle, LedgerAccounts.Receivable })
            {
                Assert.Equal(await App.BalanceAsync(single.M.MerchantId, account(single.CustomerIds[c])),
                    await App.BalanceAsync(batched.M.MerchantId, account(batched.CustomerIds[c])));
            }
        }
    }

    private async Task<string> ChargesAsync(string merchantId)
    {
        await using var c = new Npgsql.NpgsqlConnection(App.ConnectionString);
        var rows = await Dapper.SqlMapper.QueryAsync<(string RequestId, decimal Charge, string Mode)>(c,
            "SELECT request_id, charge_amount, mode FROM requests WHERE merchant_id = @m ORDER BY request_id", new { m = merchantId });
        return string.Join("\n", rows.Select(r => $"{r.RequestId} {r.Charge} {r.Mode}"));
    }
}
