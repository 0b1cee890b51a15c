using Dapper;
using Lava.Billing.Ledger;
using Lava.Billing.Meters;
using Lava.Billing.Pricing;
using Lava.Billing.Requests.Posting;
using MeterPrice = Lava.Billing.Meters.MeterPrice;
using Lava.Billing.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Lava.Billing.Tests.Requests;

/// <summary>
/// Every statement of the posting transaction finds its rows by key, for one report and for a batch of 1,000, on tables
/// with statistics: no scan of a whole table or index, no hash or merge join, nothing materialised. EXPLAIN runs the
/// statements exactly as <see cref="ReportPoster"/> sends them (<see cref="LockedReads"/>, <see cref="ReportWriter"/>), after its settings (<see cref="LockedReads.Settings"/>). Without the plan settings
/// PostgreSQL plans the batch's lookups as hash joins over whole tables (this test then fails), whose cost grows with the
/// ledger rather than with the batch.
/// </summary>
public class ReportPlanTests(LavaApp app) : ApiTest(app)
{
    private const int Customers = 1_200;

    private static readonly string[] WholeReads = ["Seq Scan", "Hash Join", "Merge Join", "Bitmap Heap Scan", "Materialize"];

    /// <summary>The statistics the plans are made with: here every table analysed.</summary>
    protected virtual Task StatisticsAsync(NpgsqlConnection connection) =>
        connection.ExecuteAsync("ANALYZE", commandType: System.Data.CommandType.Text);

    [Theory]
    [InlineData(1)]
    [InlineData(1_000)]
    public async Task EveryStatementOfThePostingFindsItsRowsByKey(int reports)
    {
        var m = await App.NewMerchantAsync();
        var meterId = await App.MeterAsync(m.MerchantId, "tokens", "fixed", "tokens_1m", (0, 1));
        await using (var c = new NpgsqlConnection(App.ConnectionString))
        {
            await c.ExecuteAsync("""
                INSERT INTO customers (merchant_id, customer_id) SELECT @m, 'cus_plan_' || i FROM generate_series(1, @n) AS i;
                WITH created AS (
                    INSERT INTO accounts (merchant_id, account_id, kind, type, customer_id, currency, cached)
                    SELECT c.merchant_id, c.customer_id || ':' || a.kind, a.kind, a.type, c.customer_id, 'USD', true
                      FROM customers c
                     CROSS JOIN (VALUES ('credits_cycle', 'liability'), ('credits_bundle', 'liability'), ('receivable', 'asset')) AS a(kind, type)
                     WHERE c.merchant_id = @m
                    RETURNING merchant_id, account_id)
                INSERT INTO account_balances (merchant_id, account_id) SELECT merchant_id, account_id FROM created;
                """, new { m = m.MerchantId, n = Customers });
            await StatisticsAsync(c);
        }
        var keyId = await App.QueryAsync<string>("SELECT secret_key_id FROM secret_keys WHERE merchant_id = @m", new { m = m.MerchantId });
        var customers = Enumerable.Range(1, reports).Select(i => $"cus_plan_{i}").ToList();
        var now = DateTimeOffset.UtcNow;
        var meter = (await App.Services.GetRequiredService<MeterStore>().FindLivePricesAsync([(m.MerchantId, "tokens")], CancellationToken.None))
            [(m.MerchantId, "tokens")];
        var prepared = customers.Select(c => PreparedReport.Of(
            new ReportItem(m.MerchantId, ReportBodies.Of("req_" + c, c, "tokens", 100) with { HoldId = "hld_" + c }, keyId), meter, now)).ToList();
        var writes = new ReportWriter.Writes(
            customers.Select(c => new ReportWriter.NewRequest(m.MerchantId, "req_" + c, new byte[32], "customer", c, meterId, 1,
                new Usage(100, 10, 0, 0, 0, 0), null, 0.01m, "{}", now, now, "txn_" + c, 201, "{}", "hld_" + c)).ToList(),
            customers.Select(c => new LedgerWriter.Row(m.MerchantId, new LedgerWriter.Transaction("txn_" + c, LedgerKinds.Usage, "req_" + c, c, now,
                [new(LedgerAccounts.CreditsCycle(c), 0.01m), new(LedgerAccounts.UsageRevenue, -0.01m)]) { MeterId = meterId, PriceVersion = 1, CreatedAt = now })).ToList(),
            customers.Select(c => new ReportWriter.UsageIncrement(m.MerchantId, meterId, c, now, 110)).ToList(),
            customers.Select(c => new ReportWriter.HoldCapture(m.MerchantId, "hld_" + c, 0.01m, "req_" + c, now)).ToList());

        var db = App.Services.GetRequiredService<NpgsqlDataSource>();
        await using var connection = await db.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await using (var settings = new NpgsqlBatch(connection, tx) { BatchCommands = { LockedReads.SettingsCommand(1_000) } })
            await settings.ExecuteNonQueryAsync();
        var statements = LockedReads.All.Select(r => (r.Name, r.Command(prepared)))
            .Append(("write", ReportWriter.Command(writes)));
        var wholeReads = new List<string>();
        foreach (var (name, statement) in statements)
        {
            await using var explain = new NpgsqlCommand("EXPLAIN " + statement.CommandText, connection, tx);
            foreach (NpgsqlParameter parameter in statement.Parameters) explain.Parameters.Add(parameter.Clone());
            var plan = new List<string>();
            await using (var reader = await explain.ExecuteReaderAsync())
                while (await reader.ReadAsync()) plan.Add(reader.GetString(0));
            var text = string.Join("\n", plan);
            if (WholeReads.Any(text.Contains) || (name == "read replays" && !text.Contains("requests_pkey")))
                wholeReads.Add($"{name}, {reports} report(s):\n{text}");
        }
        Assert.True(wholeReads.Count == 0, string.Join("\n\n", wholeReads));
    }

    /// <summary>
    /// A prepared statement runs unprepared when a call's parameter types differ from those it was prepared with, so the
    /// types PostgreSQL receives must not depend on the values: a batch without holds (empty arrays) and one with them.
    /// </summary>
    [Fact]
    public async Task ParameterTypesDoNotDependOnTheValues()
    {
        var now = DateTimeOffset.UtcNow;
        var meter = new MeterPrice("mtr", "s", 1, new Lava.Billing.Pricing.MeterPrice(RateType.Fixed, TierType.Tokens1M, [new Tier(0, 1)]));
        var one = new List<PreparedReport>
        {
            PreparedReport.Of(new ReportItem("m", ReportBodies.Of("r", "c", "s", 1) with { HoldId = "h" }, "k"), meter, now),
        };
        var nothing = new ReportWriter.Writes([], [], [], []);
        var something = new ReportWriter.Writes(
            [new("m", "r", new byte[32], "customer", "c", "mtr", 1, new Usage(1, 1, 0, 0, 0.5m, 0), 0.1m, 0.2m, "{}", now, now, "t", 201, "{}", "h")],
            [new("m", new LedgerWriter.Transaction("t", LedgerKinds.Usage, "r", "c", now, [new("a", 0.2m)]) { MeterId = "mtr", PriceVersion = 1, CreatedAt = now })],
            [new("m", "mtr", "c", now, 2)],
            [new("m", "h", 0.2m, "r", now)]);

        await using var connection = new NpgsqlConnection(App.ConnectionString);
        await connection.OpenAsync();
        async Task<List<string>> TypesAsync(IEnumerable<NpgsqlBatchCommand> commands)
        {
            var types = new List<string>();
            foreach (var command in commands)
            {
                foreach (NpgsqlParameter parameter in command.Parameters)
                {
                    await using var probe = new NpgsqlCommand("SELECT pg_typeof($1)::text", connection);
                    probe.Parameters.Add(parameter.Clone());
                    types.Add((string)(await probe.ExecuteScalarAsync())!);
                }
            }
            return types;
        }

        var empty = await TypesAsync(LockedReads.All.Select(r => r.Command([])).Append(ReportWriter.Command(nothing)));
        var filled = await TypesAsync(LockedReads.All.Select(r => r.Command(one)).Append(ReportWriter.Command(something)));
        Assert.Equal(filled, empty);
        Assert.Contains("timestamp with time zone[]", empty);
    }
}
