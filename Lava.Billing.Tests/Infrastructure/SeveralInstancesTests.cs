using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using Dapper;
using Lava.Billing.Ledger;
using Lava.Billing.Subscriptions;
using Lava.Billing.Tests.Forward;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>Two hosts of the service on one database, each with its own caches, group commit and background workers.</summary>
public sealed class TwoInstancesApp : GatewayApp
{
    private WebApplicationFactory<Program>? _second;

    /// <summary>The second instance: same configuration, same database, its own process-wide state.</summary>
    public WebApplicationFactory<Program> Second => _second ??= WithWebHostBuilder(_ => { });

    public IServiceProvider ServicesOf(int instance) => instance == 0 ? Services : Second.Services;

    public HttpClient ClientOf(int instance, string authorization)
    {
        var client = instance == 0 ? CreateClient() : Second.CreateClient();
        client.DefaultRequestHeaders.Authorization = new("Bearer", authorization);
        return client;
    }
}

/// <summary>
/// Several instances serving the same merchants at once give exactly the ledger one instance gives. Two merchants with
/// the same customers, meters and credits get the same random workload — reports, batches, holds, gateway calls, a
/// price change, a key revocation — one merchant's all through one instance, the other's spread over two; then
/// everything a user or finance can see is compared.
/// </summary>
public class SeveralInstancesTests(TwoInstancesApp app) : GatewayTest<TwoInstancesApp>(app)
{
    private const int Customers = 5;

    private sealed record Tenant(string MerchantId, string MainKey, string SpareKey, string SpareKeyId, string[] CustomerIds);

    /// <summary>One step. <paramref name="Instance"/>: where the spread run sends it (-1: chosen at random).</summary>
    private abstract record Op(int Instance)
    {
        public sealed record Report(ReportSpec Spec, int I = -1) : Op(I);
        public sealed record Batch(ReportSpec[] Specs) : Op(-1);
        public sealed record HoldThenReport(int Customer, string Amount, ReportSpec Spec, bool Void, int HoldOn, int I) : Op(I);
        public sealed record Gateway(int Customer) : Op(-1);
        public sealed record ChangePrice(int I) : Op(I);
        public sealed record RevokeSpareKey(int I) : Op(I);
        public sealed record Together(ReportSpec Spec) : Op(-1);
    }

    /// <summary>A report; Customer is an index (-1: none, meter-only). Spare: sent with the merchant's second key.</summary>
    private sealed record ReportSpec(string RequestId, int Customer, string MeterSlug, long InputTokens, long OutputTokens, string? Cost, bool Spare);

    private async Task<Tenant> TenantAsync(decimal[] credits)
    {
        var m = await App.NewMerchantAsync();
        var spare = await m.Client.PostJsonAsync("/v1/secret_keys", new { name = "spare" });
        Assert.Equal(HttpStatusCode.Created, spare.Status);
        // The extra last customer has ample credit: the concurrent phase must not depend on the order of its reports.
        var ids = new string[Customers + 1];
        for (var i = 0; i <= Customers; i++)
        {
            ids[i] = await App.CustomerAsync(m.MerchantId);
            var amount = i == Customers ? 1_000m : credits[i];
            if (amount > 0) await App.GrantAsync(m.MerchantId, ids[i], amount);
        }
        await App.MeterAsync(m.MerchantId, "tok", "fixed", "tokens_1m", (0, 5), (1_000_000, 3), (5_000_000, 1.5m));
        await App.MeterAsync(m.MerchantId, "req", "fixed", "requests", (0, 0.01m), (20, 0.0033333333m));
        await App.MeterAsync(m.MerchantId, "chat", "fixed", "tokens_1m", (0, 2.5m));
        await App.MeterAsync(m.MerchantId, "flat", "fixed", "requests", (0, 0.0125m));
        return new Tenant(m.MerchantId, m.SecretKey, (string)spare.Body!["secret_key"]!, (string)spare.Body["secret_key_id"]!, ids);
    }

    private static List<Op> Workload(Random rnd, int count)
    {
        var ops = new List<Op>();
        var issued = new List<ReportSpec>();
        var n = 0;
        for (var i = 0; i < count; i++)
        {
            // Fixed points: the instance that did not make the change serves the very next report, from its cache.
            if (i == count / 2)
            {
                ops.Add(new Op.Report(Spec("tok") with { Spare = false }, 1));
                ops.Add(new Op.ChangePrice(0));
                ops.Add(new Op.Report(Spec("tok") with { Spare = false }, 1));
            }
            if (i == count * 3 / 4)
            {
                ops.Add(new Op.Report(Spec("req") with { Spare = true }, 1));
                ops.Add(new Op.RevokeSpareKey(0));
                ops.Add(new Op.Report(Spec("req") with { Spare = true }, 1));
            }
            var roll = rnd.Next(100);
            ops.Add(roll switch
            {
                < 10 when issued.Count > 0 => new Op.Report(issued[rnd.Next(issued.Count)]),                             // replay
                < 14 when issued.Count > 0 => new Op.Report(issued[rnd.Next(issued.Count)] is var e ? e with { InputTokens = e.InputTokens + 1 } : null!), // conflict
                < 30 => new Op.Batch(Enumerable.Range(0, rnd.Next(2, 8)).Select(_ => Spec()).ToArray()),
                < 40 => new Op.HoldThenReport(rnd.Next(Customers), (rnd.Next(1, 300) / 100m).ToString(CultureInfo.InvariantCulture),
                    Spec("req"), rnd.Next(4) == 0, rnd.Next(2), rnd.Next(2)),
                < 50 => new Op.Gateway(rnd.Next(Customers)),
                < 60 => new Op.Together(Spec("flat") with { Customer = Customers }),
                _ => new Op.Report(Spec()),
            });
        }
        return ops;

        ReportSpec Spec(string? meter = null)
        {
            meter ??= rnd.Next(2) == 0 ? "tok" : "req";
            var customer = rnd.Next(10) == 0 ? -1 : rnd.Next(Customers);
            var cost = rnd.Next(4) == 0 ? (rnd.Next(0, 5_000_000) / 1_000_000m).ToString(CultureInfo.InvariantCulture) : null;
            var spec = new ReportSpec($"u{n++}", customer, meter, rnd.NextInt64(0, 2_000_000), rnd.NextInt64(0, 500_000), cost, rnd.Next(6) == 0);
            issued.Add(spec);
            return spec;
        }
    }

    private static Dictionary<string, object?> Body(ReportSpec r, Tenant t, DateTimeOffset at, string? holdId = null)
    {
        var body = new Dictionary<string, object?>
        {
            ["request_id"] = r.RequestId, ["meter_slug"] = r.MeterSlug, ["input_tokens"] = r.InputTokens,
            ["output_tokens"] = r.OutputTokens, ["timestamp"] = at,
        };
        if (r.Customer >= 0) body["customer_id"] = t.CustomerIds[r.Customer];
        if (r.Cost is not null) body["cost"] = r.Cost;
        if (holdId is not null) body["hold_id"] = holdId;
        return body;
    }

    /// <summary>Runs the workload for one merchant; returns what each step answered, as a user would note it.</summary>
    private async Task<List<string>> RunAsync(List<Op> ops, Tenant t, bool spread, DateTimeOffset at, Random route)
    {
        var seen = new List<string>();
        int Pick(Op op) => spread ? op.Instance >= 0 ? op.Instance : route.Next(2) : 0;
        HttpClient Client(int instance, bool spare = false) => App.ClientOf(instance, spare ? t.SpareKey : t.MainKey);

        foreach (var op in ops)
        {
            var instance = Pick(op);
            switch (op)
            {
                case Op.Report r:
                    seen.Add(Outcome(await Client(instance, r.Spec.Spare).PostJsonAsync("/v1/requests", Body(r.Spec, t, at))));
                    break;
                case Op.Batch b:
                {
                    var result = await Client(instance).PostJsonAsync("/v1/requests/batch", new { requests = b.Specs.Select(s => Body(s, t, at)) });
                    Assert.True(result.Status == HttpStatusCode.OK, result.Body?.ToJsonString());
                    foreach (var item in result.Body!["data"]!.AsArray())
                        seen.Add($"{item!["status"]} {(item["request"] is { } req ? Effect(req) : "")}");
                    break;
                }
                case Op.HoldThenReport h:
                {
                    var hold = await Client(h.HoldOn).PostJsonAsync("/v1/holds", new { customer_id = t.CustomerIds[h.Customer], amount = h.Amount });
                    seen.Add($"hold {(int)hold.Status} {hold.Body?["amount"]}");
                    if (hold.Status != HttpStatusCode.Created) break;
                    var holdId = (string)hold.Body!["hold_id"]!;
                    if (h.Void)
                    {
                        seen.Add($"void {(int)(await Client(instance).DeleteJsonAsync($"/v1/holds/{holdId}")).Status}");
                        break;
                    }
                    var spec = h.Spec with { Customer = h.Customer, Spare = false };
                    seen.Add(Outcome(await Client(instance).PostJsonAsync("/v1/requests", Body(spec, t, at, holdId))));
                    var after = (await Client(1 - instance).GetJsonAsync($"/v1/holds/{holdId}")).Body!;
                    seen.Add($"hold {after["status"]} {after["captured_amount"]}");
                    break;
                }
                case Op.Gateway g:
                {
                    var client = App.ClientOf(instance, GatewayApp.Token(t.MainKey, t.CustomerIds[g.Customer], "chat"));
                    var result = await client.PostAsync(App.Forward("/v1/chat/completions"),
                        Http.Json("""{"model":"gpt-4o","max_tokens":500,"messages":[{"role":"user","content":"hi"}]}"""));
                    await result.Content.ReadAsStringAsync();
                    seen.Add($"gateway {(int)result.StatusCode}");
                    if (result.IsSuccessStatusCode)
                    {
                        var requestId = result.Headers.GetValues("x-lava-request-id").Single();
                        await WaitForRowAsync("SELECT count(*) FROM requests WHERE merchant_id = @m AND request_id = @r", new { m = t.MerchantId, r = requestId });
                    }
                    break;
                }
                case Op.ChangePrice:
                {
                    var result = await Client(instance).PatchJsonAsync("/v1/meters/tok", new { tiers = new[] { new { start = "0", rate = "7" }, new { start = "3000000", rate = "2" } } });
                    seen.Add($"price {(int)result.Status}");
                    break;
                }
                case Op.RevokeSpareKey:
                    seen.Add($"revoke {(int)(await Client(instance).DeleteJsonAsync($"/v1/secret_keys/{t.SpareKeyId}")).Status}");
                    break;
                case Op.Together x:
                {
                    // The same report reaches both instances at once (a client retrying on another node): one posting.
                    var body = Body(x.Spec, t, at);
                    var both = spread
                        ? await Task.WhenAll(Client(0).PostJsonAsync("/v1/requests", body), Client(1).PostJsonAsync("/v1/requests", body))
                        : [await Client(0).PostJsonAsync("/v1/requests", body), await Client(0).PostJsonAsync("/v1/requests", body)];
                    seen.Add(string.Join(" | ", both.Select(Outcome).Order()));
                    break;
                }
            }
        }
        return seen;
    }

    private static string Outcome((HttpStatusCode Status, JsonNode? Body, HttpResponseMessage Response) r) => r.Status switch
    {
        HttpStatusCode.Created => (r.Response.Headers.Contains("Idempotent-Replayed") ? "replayed " : "created ") + Effect(r.Body!),
        var other => $"{(int)other} {r.Body?["error"]?["code"]}",
    };

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
    public async Task AWorkloadSpreadOverTwoInstancesPostsWhatOneInstancePosts(int seed)
    {
        var rnd = new Random(seed);
        var credits = Enumerable.Range(0, Customers).Select(_ => rnd.Next(3) == 0 ? 0m : rnd.Next(1, 1_500) / 100m).ToArray();
        var one = await TenantAsync(credits);
        var two = await TenantAsync(credits);
        var ops = Workload(rnd, 120);
        var at = DateTimeOffset.UtcNow.AddMinutes(-1);

        var alone = await RunAsync(ops, one, spread: false, at, new Random(seed));
        var spread = await RunAsync(ops, two, spread: true, at, new Random(seed));

        Assert.Equal(alone, spread);
        Assert.Contains(alone, s => s.StartsWith("created", StringComparison.Ordinal));
        Assert.Contains(alone, s => s.StartsWith("replayed", StringComparison.Ordinal));
        Assert.Contains("401 unauthorized", alone);
        Assert.Contains("gateway 200", alone);
        Assert.Equal(await PostingsAsync(one), await PostingsAsync(two));
        Assert.Equal(await ChargesAsync(one.MerchantId), await ChargesAsync(two.MerchantId));
        for (var c = 0; c <= Customers; c++)
        {
            foreach (var account in new Func<string, string>[] { LedgerAccounts.CreditsCycle, LedgerAccounts.CreditsBundle, LedgerAccounts.Receivable })
                Assert.Equal(await App.BalanceAsync(one.MerchantId, account(one.CustomerIds[c])), await App.BalanceAsync(two.MerchantId, account(two.CustomerIds[c])));
        }
        foreach (var t in new[] { one, two })
        {
            var verify = await App.ClientOf(1, t.MainKey).GetJsonAsync("/v1/ledger/verify");
            Assert.True((bool)verify.Body!["ok"]!, verify.Body.ToJsonString());
        }
    }

    [Fact]
    public async Task CycleProcessorsOnTwoInstancesCloseADueCycleOnce()
    {
        var m = await App.NewMerchantAsync();
        var customers = new List<string>();
        var meterId = await App.MeterAsync(m.MerchantId, "req", "fixed", "requests", (0, 1));
        var plan = await App.PlanAsync(m.MerchantId, 10m, 8m, "month", "none", "none", [meterId]);
        for (var i = 0; i < 20; i++)
        {
            customers.Add(await App.CustomerAsync(m.MerchantId));
            var r = await m.Client.PostJsonAsync("/v1/subscriptions", new { customer_id = customers[i], plan_id = plan.PlanId });
            Assert.Equal(HttpStatusCode.Created, r.Status);
        }
        await using (var c = new NpgsqlConnection(App.ConnectionString))
            await c.ExecuteAsync("""
                UPDATE subscriptions SET started_at = now() - interval '1 month 1 minute', cycle_start_at = now() - interval '1 month 1 minute',
                                         cycle_end_at = now() - interval '1 minute'
                 WHERE merchant_id = @m
                """, new { m = m.MerchantId });

        var now = DateTimeOffset.UtcNow;
        var closed = await Task.WhenAll(Enumerable.Range(0, 4).Select(i =>
            App.ServicesOf(i % 2).GetRequiredService<CycleProcessor>().RunDueAsync(now, CancellationToken.None)));

        // The background workers may have closed some too, and one may still be committing a cycle it took (the calls
        // above skip a cycle another holds): wait for every cycle to close; what matters is that each closed exactly once.
        Assert.True(closed.Sum() <= customers.Count);
        Task<long> ClosedAsync() => App.QueryAsync<long>(
            "SELECT count(*) FROM ledger_transactions WHERE merchant_id = @m AND kind = 'cycle_expiry'", new { m = m.MerchantId });
        var deadline = DateTime.UtcNow.AddSeconds(20);
        while (await ClosedAsync() < customers.Count && DateTime.UtcNow < deadline) await Task.Delay(100);
        Assert.Equal(customers.Count, await ClosedAsync());
        foreach (var customer in customers)
            Assert.Equal(-8m, await App.BalanceAsync(m.MerchantId, LedgerAccounts.CreditsCycle(customer)));
    }

    /// <summary>Every ledger transaction as kind and entries, customers as their index, in a stable order.</summary>
    private async Task<string> PostingsAsync(Tenant t)
    {
        await using var c = new NpgsqlConnection(App.ConnectionString);
        var rows = await c.QueryAsync<(string TransactionId, string Kind, string AccountId, decimal Amount)>("""
            SELECT t.transaction_id, t.kind, e.account_id, e.amount
              FROM ledger_transactions t JOIN entries e ON e.merchant_id = t.merchant_id AND e.transaction_id = t.transaction_id
             WHERE t.merchant_id = @m
            """, new { m = t.MerchantId });
        string Account(string id)
        {
            for (var i = 0; i < t.CustomerIds.Length; i++) id = id.Replace(t.CustomerIds[i], $"customer{i}", StringComparison.Ordinal);
            return id;
        }
        return string.Join("\n", rows.GroupBy(r => r.TransactionId)
            .Select(g => g.First().Kind + ": " + string.Join(", ", g.Select(r => $"{Account(r.AccountId)} {r.Amount}").Order()))
            .Order());
    }

    /// <summary>Reports the client named, by request id; gateway calls (ids the service chose) by count and charge.</summary>
    private async Task<string> ChargesAsync(string merchantId)
    {
        await using var c = new NpgsqlConnection(App.ConnectionString);
        var rows = (await c.QueryAsync<(string RequestId, decimal Charge, string Mode, int PriceVersion)>(
            "SELECT request_id, charge_amount, mode, price_version FROM requests WHERE merchant_id = @m", new { m = merchantId })).ToList();
        var named = rows.Where(r => r.RequestId.StartsWith('u')).OrderBy(r => r.RequestId, StringComparer.Ordinal)
            .Select(r => $"{r.RequestId} {r.Charge} {r.Mode} v{r.PriceVersion}");
        var gateway = rows.Where(r => !r.RequestId.StartsWith('u')).Select(r => $"gateway {r.Charge} {r.Mode}").Order();
        return string.Join("\n", named.Concat(gateway));
    }
}
