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

    /// <summary>
    /// Whether requests holds rows when the statements are planned. On an empty table every index ties, and a plan made
    /// for the keys at one execution may look requests up by another index than its key's at no cost; it is made again at
    /// the next execution, with the rows then there.
    /// </summary>
    protected virtual bool RequestsHoldRows => true;

    /// <summary>
    /// The statements of <see cref="StatementsAsync"/> the posting plans for their values at every execution on this
    /// database (<see cref="PostingPlans"/>): here, with every table analysed with rows, none.
    /// </summary>
    protected virtual IEnumerable<string> PlannedAtEveryExecution => [];

    [Theory]
    [InlineData(1)]
    [InlineData(1_000)]
    public async Task EveryStatementOfThePostingFindsItsRowsByKey(int reports)
    {
        var statements = await StatementsAsync(reports);
        var db = App.Services.GetRequiredService<NpgsqlDataSource>();
        await using var connection = await db.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await using (var settings = new NpgsqlBatch(connection, tx) { BatchCommands = { LockedReads.SettingsCommand(1_000) } })
            await settings.ExecuteNonQueryAsync();
        var wholeReads = new List<string>();
        foreach (var (name, statement) in statements)
        {
            await using var explain = new NpgsqlCommand("EXPLAIN " + statement.CommandText, connection, tx);
            foreach (NpgsqlParameter parameter in statement.Parameters) explain.Parameters.Add(parameter.Clone());
            var plan = new List<string>();
            await using (var reader = await explain.ExecuteReaderAsync())
                while (await reader.ReadAsync()) plan.Add(reader.GetString(0));
            var text = string.Join("\n", plan);
            if (WholeReads.Any(text.Contains) || (name == "read replays" && RequestsHoldRows && !text.Contains("requests_pkey")))
                wholeReads.Add($"{name}, {reports} report(s):\n{text}");
        }
        Assert.True(wholeReads.Count == 0, string.Join("\n\n", wholeReads));
    }

    /// <summary>
    /// The plan PostgreSQL caches for a statement and reuses at every later execution on the connection, made once without
    /// the keys' values (a guess of 10 keys per array): every lookup in it still an index lookup bounded by the keys, never
    /// a whole table, a whole index, or every row of a merchant read with the keys filtered after. Held for each statement
    /// the posting runs with its cached plan on this database, as <see cref="PostingPlans"/> decides from the statistics
    /// (the others are planned for their keys, as <see cref="EveryStatementOfThePostingFindsItsRowsByKey"/> holds).
    /// Explained as the posting's transaction runs them (its settings), each statement prepared and its generic plan forced.
    /// </summary>
    [Fact]
    public async Task EveryStatementThePostingRunsWithItsCachedPlanLooksItsRowsUpByTheirKeysInThatPlan()
    {
        var all = await StatementsAsync(1);
        var plans = App.Services.GetRequiredService<PostingPlans>();
        await plans.RefreshAsync(CancellationToken.None);
        var hold = new ReportWriter.HoldCapture("m", "h", 1m, "r", DateTimeOffset.UtcNow);
        bool Cached(string name) => name switch
        {
            "write" => ReportWriter.RunsCachedPlan(new ReportWriter.Writes([], [], [], []), plans),
            "write capturing holds" => ReportWriter.RunsCachedPlan(new ReportWriter.Writes([], [], [], [hold]), plans),
            _ => plans.Generic(LockedReads.All.Single(r => r.Name == name)),
        };
        Assert.Equal(PlannedAtEveryExecution.Order(), all.Select(s => s.Name).Where(n => !Cached(n)).Order());
        var statements = all.Where(s => Cached(s.Name));
        var db = App.Services.GetRequiredService<NpgsqlDataSource>();
        await using var connection = await db.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await using (var settings = new NpgsqlBatch(connection, tx) { BatchCommands = { LockedReads.SettingsCommand(1_000) } })
            await settings.ExecuteNonQueryAsync();
        // As the settings choose, said again here: this test is about the cached plan whatever the settings say.
        await connection.ExecuteAsync("SET LOCAL plan_cache_mode = force_generic_plan", transaction: tx);
        var wholeReads = new List<string>();
        var i = 0;
        foreach (var (name, statement) in statements)
        {
            var prepared = $"posting_generic_{i++}";
            await connection.ExecuteAsync($"PREPARE {prepared} AS {statement.CommandText}", transaction: tx);
            var values = string.Join(", ", Enumerable.Repeat("NULL", statement.Parameters.Count));
            var json = await connection.QuerySingleAsync<string>($"EXPLAIN (FORMAT JSON) EXECUTE {prepared}({values})", transaction: tx);
            var found = GenericPlanWholeReads(System.Text.Json.JsonDocument.Parse(json).RootElement[0].GetProperty("Plan")).ToList();
            if (name == "read replays" && !json.Contains("\"requests_pkey\"")) found.Add("the replay read not by requests_pkey");
            if (found.Count > 0) wholeReads.Add($"{name}: {string.Join("; ", found)}\n{json}");
        }
        Assert.True(wholeReads.Count == 0, string.Join("\n\n", wholeReads));
    }

    // The nodes of a plan that read more than the keys: whole-table reads, an index scan without a condition (every entry
    // of the index), or one whose only condition is the merchant (every row of the merchant).
    internal static IEnumerable<string> GenericPlanWholeReads(System.Text.Json.JsonElement node)
    {
        var type = node.GetProperty("Node Type").GetString()!;
        var relation = node.TryGetProperty("Relation Name", out var r) ? r.GetString() : null;
        if (WholeReads.Any(w => w.StartsWith(type, StringComparison.Ordinal))) yield return $"{type} {relation}";
        if (type is "Index Scan" or "Index Only Scan")
        {
            var index = node.GetProperty("Index Name").GetString();
            var condition = node.TryGetProperty("Index Cond", out var c) ? c.GetString()! : "";
            var columns = System.Text.RegularExpressions.Regex.Matches(condition, @"\((\w+) (?:=|<=|>=|<|>) ").Select(m => m.Groups[1].Value).ToHashSet();
            if (columns.Count == 0) yield return $"{type} of {index} on {relation} without an index condition";
            else if (columns.SetEquals(["merchant_id"])) yield return $"{type} of {index} on {relation} by merchant only: {condition}";
        }
        if (node.TryGetProperty("Plans", out var children))
            foreach (var child in children.EnumerateArray())
                foreach (var found in GenericPlanWholeReads(child))
                    yield return found;
    }

    /// <summary>
    /// The two lock reads take their row locks one key at a time, in the order their nested loop reads its outer side:
    /// only when that side is the keys sorted by (merchant, key) do all transactions lock in one global order, which is
    /// what keeps two postings from deadlocking. Nothing in the SQL forces that shape, so each plan is read for it: the plan
    /// for the keys at hand, as the posting makes it, and the generic plan a cached statement would keep. The same
    /// statements with their keys sorted the other way round must be found out, or this test could not fail.
    /// </summary>
    [Theory]
    [InlineData(1)]
    [InlineData(1_000)]
    public async Task TheLockReadsLockTheirRowsInTheSortedOrderOfTheirKeys(int reports)
    {
        var locks = new Dictionary<string, string[]>
        {
            ["lock balances"] = ["merchant_id", "account_id"],
            ["lock holds"] = ["merchant_id", "hold_id"],
        };
        var statements = (await StatementsAsync(reports)).Where(s => locks.ContainsKey(s.Name)).ToList();
        Assert.Equal(locks.Keys.Order(), statements.Select(s => s.Name).Order());
        var db = App.Services.GetRequiredService<NpgsqlDataSource>();
        await using var connection = await db.OpenConnectionAsync();
        await using var tx = await connection.BeginTransactionAsync();
        await using (var settings = new NpgsqlBatch(connection, tx) { BatchCommands = { LockedReads.SettingsCommand(1_000) } })
            await settings.ExecuteNonQueryAsync();

        async Task<System.Text.Json.JsonElement> CustomPlanAsync(NpgsqlBatchCommand statement, string sql)
        {
            await using var explain = new NpgsqlCommand("EXPLAIN (VERBOSE, FORMAT JSON) " + sql, connection, tx);
            foreach (NpgsqlParameter parameter in statement.Parameters) explain.Parameters.Add(parameter.Clone());
            return System.Text.Json.JsonDocument.Parse((string)(await explain.ExecuteScalarAsync())!).RootElement[0].GetProperty("Plan");
        }
        var i = 0;
        async Task<System.Text.Json.JsonElement> GenericPlanAsync(NpgsqlBatchCommand statement, string sql)
        {
            var prepared = $"posting_lock_{i++}";
            await connection.ExecuteAsync($"PREPARE {prepared} AS {sql}", transaction: tx);
            await connection.ExecuteAsync("SET LOCAL plan_cache_mode = force_generic_plan", transaction: tx);
            var values = string.Join(", ", Enumerable.Repeat("NULL", statement.Parameters.Count));
            var json = await connection.QuerySingleAsync<string>($"EXPLAIN (VERBOSE, FORMAT JSON) EXECUTE {prepared}({values})", transaction: tx);
            // A prepared statement outlives the transaction, on a connection the pool hands the next test.
            await connection.ExecuteAsync($"DEALLOCATE {prepared}; SET LOCAL plan_cache_mode = force_custom_plan", transaction: tx);
            return System.Text.Json.JsonDocument.Parse(json).RootElement[0].GetProperty("Plan");
        }

        var faults = new List<string>();
        foreach (var (name, statement) in statements)
        {
            var reversed = statement.CommandText.Replace("ORDER BY 1, 2", "ORDER BY 2, 1");
            Assert.NotEqual(statement.CommandText, reversed);
            foreach (var (kind, plan) in new[] { ("custom", await CustomPlanAsync(statement, statement.CommandText)), ("generic", await GenericPlanAsync(statement, statement.CommandText)) })
                if (LockOrderFaults(plan, locks[name]) is { } fault) faults.Add($"{name}, {kind} plan, {reports} report(s): {fault}\n{plan}");
            Assert.NotNull(LockOrderFaults(await CustomPlanAsync(statement, reversed), locks[name]));
            Assert.NotNull(LockOrderFaults(await GenericPlanAsync(statement, reversed), locks[name]));
        }
        Assert.True(faults.Count == 0, string.Join("\n\n", faults));
    }

    // Why a lock read's plan would not lock its rows in the sorted order of the keys (null when it does): the one
    // row-locking node must sit on the inner side of a nested loop, looking its rows up by every key column, and the loop's
    // outer side must hand it the keys from a sort by those columns in the table's key order, through nodes that keep order.
    private static string? LockOrderFaults(System.Text.Json.JsonElement plan, string[] keyColumns)
    {
        var paths = new List<System.Text.Json.JsonElement[]>();
        void Walk(System.Text.Json.JsonElement node, System.Text.Json.JsonElement[] above)
        {
            var path = above.Append(node).ToArray();
            if (node.GetProperty("Node Type").GetString() == "LockRows") paths.Add(path);
            if (node.TryGetProperty("Plans", out var children))
                foreach (var child in children.EnumerateArray()) Walk(child, path);
        }
        Walk(plan, []);
        if (paths.Count != 1) return $"{paths.Count} row-locking nodes, not one";
        var lockPath = paths[0];
        static string Type(System.Text.Json.JsonElement n) => n.GetProperty("Node Type").GetString()!;
        static string? Relationship(System.Text.Json.JsonElement n) => n.TryGetProperty("Parent Relationship", out var r) ? r.GetString() : null;
        static string[] Output(System.Text.Json.JsonElement n) => n.GetProperty("Output").EnumerateArray().Select(o => o.GetString()!).ToArray();

        var loop = Enumerable.Range(0, lockPath.Length - 1).Reverse()
            .FirstOrDefault(a => Type(lockPath[a]) == "Nested Loop" && Relationship(lockPath[a + 1]) == "Inner", -1);
        if (loop < 0) return "the rows are not locked on the inner side of a nested loop, one outer row at a time";

        var scan = lockPath[^1];
        while (!scan.TryGetProperty("Index Cond", out _) && scan.TryGetProperty("Plans", out var below) && below.GetArrayLength() == 1) scan = below[0];
        var condition = scan.TryGetProperty("Index Cond", out var c) ? c.GetString()! : "";
        var outerOf = System.Text.RegularExpressions.Regex.Matches(condition, @"\(\w+\.(\w+) = ([^()\s]+)\)")
            .ToDictionary(m => m.Groups[1].Value, m => m.Groups[2].Value);
        if (!keyColumns.All(outerOf.ContainsKey)) return $"the locked rows are not looked up by every key column: '{condition}'";

        // The keys by the names each node below the loop's outer side gives them, followed down to the sort.
        var node = lockPath[loop].GetProperty("Plans").EnumerateArray().Single(p => Relationship(p) == "Outer");
        var names = keyColumns.Select(k => outerOf[k]).ToArray();
        while (true)
        {
            var positions = names.Select(n => Array.IndexOf(Output(node), n)).ToArray();
            if (positions.Contains(-1)) return $"{Type(node)} on the outer side does not hand on the keys {string.Join(", ", names)}";
            if (Type(node) is "Sort" or "Incremental Sort")
            {
                var sortKey = node.GetProperty("Sort Key").EnumerateArray().Select(k => k.GetString()!).ToArray();
                return sortKey.Take(names.Length).SequenceEqual(names) ? null : $"sorted by {string.Join(", ", sortKey)}, not by {string.Join(", ", names)}";
            }
            var keepsOrder = Type(node) is "Unique" or "Group" or "Subquery Scan" or "Limit" or "Result" ||
                             (Type(node) == "Aggregate" && node.GetProperty("Strategy").GetString() == "Sorted");
            if (!keepsOrder || node.GetProperty("Plans").GetArrayLength() != 1)
                return $"{Type(node)} on the outer side hands the keys on in no sorted order";
            var child = node.GetProperty("Plans")[0];
            names = positions.Select(p => Output(child)[p]).ToArray();
            node = child;
        }
    }

    // The history of the tables every merchant fills: requests, ledger transactions, usage totals, meters and keys.
    internal const string KeyedHistorySql = """
        INSERT INTO requests (merchant_id, request_id, fingerprint, mode, customer_id, meter_id, price_version, input_tokens, output_tokens,
                              input_characters, output_characters, input_seconds, output_seconds, charge_amount, occurred_at, transaction_id, status_code, response)
        SELECT @m, 'req_seed_' || i, decode(repeat('00', 32), 'hex'), 'customer', 'cus_plan_' || (i % 1200 + 1), 'mtr_seed', 1, 1, 1, 0, 0, 0, 0, 0,
               now() - i * interval '1 second', 'txn_seed_' || i, 201, '{}'
          FROM generate_series(1, 5000) AS i;
        INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, customer_id, effective_at)
        SELECT @m, 'txn_seed_' || i, 'usage', 'req_seed_' || i, 'cus_plan_' || (i % 1200 + 1), now() FROM generate_series(1, 5000) AS i;
        INSERT INTO usage_totals (merchant_id, meter_id, customer_id, period_start, quantity)
        SELECT @m, 'mtr_seed_' || (i % 5), 'cus_plan_' || (i % 1200 + 1), date_trunc('month', now()) - (i / 6000) * interval '1 month', 1
          FROM generate_series(1, 5000) AS i ON CONFLICT DO NOTHING;
        INSERT INTO meters (merchant_id, meter_id, meter_slug, name, rate_type, tier_type)
        SELECT @m, 'mtr_seed_' || i, 'seed-' || i, 'm', 'fixed', 'tokens_1m' FROM generate_series(1, 400) AS i;
        INSERT INTO secret_keys (merchant_id, secret_key_id, name, key_hash, secret_key_hint, revoked_at)
        SELECT @m, 'key_seed_' || i, 'k', sha256(i::text::bytea), 'h', CASE WHEN i % 2 = 0 THEN now() END FROM generate_series(1, 400) AS i;
        """;

    // The history of the tables only some merchants fill: holds (the gateway), subscriptions, plan meters and bundles.
    internal const string PlanHistorySql = """
        INSERT INTO holds (merchant_id, hold_id, customer_id, amount, status, expires_at)
        SELECT @m, 'hld_seed_' || i, 'cus_plan_' || (i % 1200 + 1), 1, CASE WHEN i % 2 = 0 THEN 'active' ELSE 'captured' END, now() + interval '1 hour'
          FROM generate_series(1, 5000) AS i;
        INSERT INTO subscriptions (merchant_id, subscription_id, customer_id, plan_id, status, auto_top_up_bundle_id, started_at, cycle_number, cycle_start_at, cycle_end_at)
        SELECT @m, 'sub_seed_' || i, 'cus_plan_' || i, 'pln_seed_' || (i % 20), CASE WHEN i % 3 = 0 THEN 'cancelled' ELSE 'active' END, 'bnd_seed_' || (i % 20),
               now(), 1, now() - interval '1 day', now() + interval '29 days'
          FROM generate_series(601, 1200) AS i;
        INSERT INTO plan_meters (merchant_id, plan_id, meter_id) SELECT @m, 'pln_seed_' || (i % 20), 'mtr_seed_' || i FROM generate_series(1, 400) AS i;
        INSERT INTO credit_bundles (merchant_id, credit_bundle_id, plan_id, name, cost, credit_amount, position)
        SELECT @m, 'bnd_seed_' || i, 'pln_seed_' || (i % 20), 'b', 1, 1, i FROM generate_series(1, 400) AS i;
        """;

    internal const string HistorySql = KeyedHistorySql + "\n" + PlanHistorySql;

    /// <summary>The history written before the statistics are taken: here in every table the posting reads.</summary>
    protected virtual string History => HistorySql;

    /// <summary>
    /// A merchant with <see cref="Customers"/> customers and their balance accounts, the statistics of
    /// <see cref="StatisticsAsync"/>, and the posting's statements for <paramref name="reports"/> of them as
    /// <see cref="ReportPoster"/> sends them.
    /// </summary>
    private async Task<List<(string Name, NpgsqlBatchCommand Command)>> StatementsAsync(int reports)
    {
        var m = await App.NewMerchantAsync();
        var meterId = await App.MeterAsync(m.MerchantId, "tokens", "fixed", "tokens_1m", (0, 1));
        var keyId = await App.QueryAsync<string>("SELECT secret_key_id FROM secret_keys WHERE merchant_id = @m", new { m = m.MerchantId });
        await using (var c = new NpgsqlConnection(App.ConnectionString))
        {
            await c.ExecuteAsync(Seed.CustomersWithBalancesSql + "\nSELECT pg_stat_force_next_flush();",
                new { m = m.MerchantId, prefix = "cus_plan_", n = Customers });
        }
        // The merchant's history in the tables the posting reads by key, written past the checks (its references are
        // made up): a table that is empty when a plan is made is read whole at no cost and ties every index with the
        // lookup; with rows in it, only a lookup by the keys is cheap. Each writer hands its row counts to the statistics
        // before it answers (a backend otherwise reports them up to a second or more later, and counts reported after the
        // ANALYZE are added to its count: the posting would see tables doubled since, at the edge of outgrown).
        await using (var admin = new NpgsqlConnection(App.AdminConnectionString))
        {
            await admin.ExecuteAsync("SET session_replication_role = replica;\n" + History +
                "\nSET session_replication_role = origin;\nSELECT pg_stat_force_next_flush();", new { m = m.MerchantId });
        }
        await using (var c = new NpgsqlConnection(App.ConnectionString)) await StatisticsAsync(c);
        var customers = Enumerable.Range(1, reports).Select(i => $"cus_plan_{i}").ToList();
        var now = DateTimeOffset.UtcNow;
        var meter = (await MeterStore.FindLivePricesAsync([(m.MerchantId, "tokens")], App.Services.GetRequiredService<NpgsqlDataSource>(),
                CancellationToken.None))
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
        return LockedReads.All.Select(r => (r.Name, r.Command(prepared)))
            .Append(("write", ReportWriter.Command(writes with { Holds = [] })))
            .Append(("write capturing holds", ReportWriter.Command(writes))).ToList();
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

        // The write has two texts, with and without hold captures: each compared with itself.
        var empty = await TypesAsync(LockedReads.All.Select(r => r.Command([]))
            .Append(ReportWriter.Command(nothing)).Append(ReportWriter.Command(nothing with { Holds = something.Holds })));
        var filled = await TypesAsync(LockedReads.All.Select(r => r.Command(one))
            .Append(ReportWriter.Command(something with { Holds = [] })).Append(ReportWriter.Command(something)));
        Assert.Equal(filled, empty);
        Assert.Contains("timestamp with time zone[]", empty);
    }
}
