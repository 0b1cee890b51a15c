using Lava.Billing.Ledger;
using Npgsql;
using NpgsqlTypes;

namespace Lava.Billing.Requests.Posting;

/// <summary>
/// One read of the lock step, whole: its SQL, the parameters it takes from the reports, and what each of its rows adds to
/// the <see cref="LockedState"/> (null: the statement returns no rows), and the tables it reads (whose statistics decide
/// whether it may run a cached plan, <see cref="PostingPlans"/>). Adding a read is adding one entry to
/// <see cref="LockedReads.All"/>.
/// </summary>
public sealed record LockedRead(string Name, string Sql, Func<IReadOnlyList<PreparedReport>, NpgsqlParameter[]> Parameters,
    Action<NpgsqlDataReader, LockedState>? Row, params string[] Tables)
{
    public NpgsqlBatchCommand Command(IReadOnlyList<PreparedReport> reports)
    {
        var command = new NpgsqlBatchCommand(Sql);
        command.Parameters.AddRange(Parameters(reports));
        return command;
    }
}

/// <summary>
/// What the posting transaction locks and reads before it plans, in the order it sends them: the usage totals, then the
/// customers' balance rows, then the holds, each in one global sorted order so concurrent transactions cannot deadlock;
/// then, after the locks, so that they see whatever committed while this transaction waited, replays, billing contexts,
/// plan meters, live keys and live meters.
/// </summary>
public static class LockedReads
{
    // The one place a report's usage period is decided (docs/design.md, "Usage periods"): the customer's active
    // subscription cycle, or without one the UTC calendar month of when the usage occurred. cycle_start_at goes out too,
    // so the planner can tell that the customers read saw the same subscription.
    private const string UsagePeriods = """
        SELECT k.merchant_id, k.meter_id, k.customer_id, k.occurred_at, s.cycle_start_at,
               coalesce(s.cycle_start_at, date_trunc('month', k.occurred_at, 'UTC')) AS period_start
          FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS k(merchant_id, meter_id, customer_id, occurred_at)
          LEFT JOIN LATERAL (SELECT s.cycle_start_at FROM subscriptions s
                              WHERE s.merchant_id = k.merchant_id AND s.customer_id = k.customer_id AND s.status = 'active'
                              LIMIT 1) AS s ON true
         WHERE k.customer_id = ''
            OR EXISTS (SELECT 1 FROM customers c WHERE c.merchant_id = k.merchant_id AND c.customer_id = k.customer_id AND c.deleted_at IS NULL)
        """;

    // Creates the missing totals and locks them all. "DO UPDATE ... WHERE false" locks a conflicting row without writing
    // a new version of it (the write step updates it once, later). DISTINCT: two reports of one customer and meter may
    // fall in the same period, and ON CONFLICT may touch a row only once per statement.
    private const string LockUsage = $"""
        INSERT INTO usage_totals (merchant_id, meter_id, customer_id, period_start, quantity)
        SELECT DISTINCT merchant_id, meter_id, customer_id, period_start, 0::numeric FROM ({UsagePeriods}) AS k
         ORDER BY 1, 2, 3, 4
        ON CONFLICT (merchant_id, meter_id, customer_id, period_start) DO UPDATE SET quantity = usage_totals.quantity WHERE false
        """;

    // A statement after the lock, so its snapshot sees the latest committed quantity of every row it locked. One primary
    // key lookup per key, whatever the plan cache decides (LIMIT 1 keeps the lateral from becoming a hash join). A period
    // that moved since the lock (a subscription began between the two statements) finds no row: the planner retries.
    private const string SelectUsage = $"""
        SELECT k.merchant_id, k.meter_id, k.customer_id, k.occurred_at, u.period_start, k.cycle_start_at, u.quantity
          FROM ({UsagePeriods}) AS k
         CROSS JOIN LATERAL (SELECT t.period_start, t.quantity FROM usage_totals t
                              WHERE t.merchant_id = k.merchant_id AND t.meter_id = k.meter_id AND t.customer_id = k.customer_id
                                AND t.period_start = k.period_start
                              LIMIT 1) AS u
        """;

    // Every read below looks its rows up one key at a time, in a LATERAL subquery with LIMIT 1 (or OFFSET 0 where a key has
    // several rows): a subquery that cannot be flattened into a join is run once per key with the key as its parameters,
    // so even a plan made without the keys (guessing 10 per array) has no join order to choose and no side to read whole
    // (ReportPlanTests, "generic plan"). The locks are taken in the keys' sorted order, one global order for every
    // transaction, so that two transactions cannot deadlock on them.
    private const string LockBalances = """
        SELECT b.merchant_id, b.account_id, b.balance
          FROM (SELECT DISTINCT * FROM unnest($1::text[], $2::text[]) ORDER BY 1, 2) AS k(merchant_id, account_id)
         CROSS JOIN LATERAL (SELECT b.merchant_id, b.account_id, b.balance FROM account_balances b
                              WHERE b.merchant_id = k.merchant_id AND b.account_id = k.account_id
                              LIMIT 1 FOR UPDATE) AS b
        """;

    private const string LockHolds = """
        SELECT h.merchant_id, h.hold_id, h.customer_id, h.status, h.expires_at
          FROM (SELECT DISTINCT * FROM unnest($1::text[], $2::text[]) ORDER BY 1, 2) AS k(merchant_id, hold_id)
         CROSS JOIN LATERAL (SELECT h.merchant_id, h.hold_id, h.customer_id, h.status, h.expires_at FROM holds h
                              WHERE h.merchant_id = k.merchant_id AND h.hold_id = k.hold_id
                              LIMIT 1 FOR UPDATE) AS h
        """;

    private const string SelectExisting = $"""
        SELECT r.merchant_id, r.request_id, r.fingerprint, r.status_code, {StoredReport.ResponseSql}
          FROM unnest($1::text[], $2::text[]) AS k(merchant_id, request_id)
         CROSS JOIN LATERAL (SELECT * FROM requests r WHERE r.merchant_id = k.merchant_id AND r.request_id = k.request_id LIMIT 1) AS r
          {StoredReport.JoinTransaction}
        """;

    // Laterals: a left join to the bundle (keyed by a column of the nullable subscription side) was planned as one read of
    // every bundle, materialised (ReportPlanTests). The one active subscription and the bundle are unique by key.
    private const string SelectCustomers = $"""
        SELECT c.merchant_id, c.customer_id, s.cycle_start_at, s.plan_id, b.cost, b.credit_amount,
               (SELECT count(*)::int FROM ledger_transactions t
                 WHERE t.merchant_id = c.merchant_id AND t.customer_id = c.customer_id AND t.kind = '{LedgerKinds.AutoTopUp}'
                   AND t.created_at >= s.cycle_start_at)
          FROM unnest($1::text[], $2::text[]) AS k(merchant_id, customer_id)
         CROSS JOIN LATERAL (SELECT * FROM customers c
                              WHERE c.merchant_id = k.merchant_id AND c.customer_id = k.customer_id AND c.deleted_at IS NULL
                              LIMIT 1) AS c
          LEFT JOIN LATERAL (SELECT * FROM subscriptions s
                              WHERE s.merchant_id = c.merchant_id AND s.customer_id = c.customer_id AND s.status = 'active'
                              LIMIT 1) AS s ON true
          LEFT JOIN LATERAL (SELECT * FROM credit_bundles b
                              WHERE b.merchant_id = s.merchant_id AND b.credit_bundle_id = s.auto_top_up_bundle_id AND b.deleted_at IS NULL
                              LIMIT 1) AS b ON true
        """;

    // A plan's meters are several rows: OFFSET 0 keeps that subquery apart as LIMIT 1 does the others.
    private const string SelectPlanMeters = """
        SELECT pm.merchant_id, pm.plan_id, pm.meter_id
          FROM unnest($1::text[], $2::text[]) AS k(merchant_id, customer_id)
         CROSS JOIN LATERAL (SELECT s.merchant_id, s.plan_id FROM subscriptions s
                              WHERE s.merchant_id = k.merchant_id AND s.customer_id = k.customer_id AND s.status = 'active'
                              LIMIT 1) AS s
         CROSS JOIN LATERAL (SELECT pm.merchant_id, pm.plan_id, pm.meter_id FROM plan_meters pm
                              WHERE pm.merchant_id = s.merchant_id AND pm.plan_id = s.plan_id
                              OFFSET 0) AS pm
        """;

    // The reporting keys, checked again inside the transaction that posts: auth may have answered from its cache.
    private const string SelectLiveKeys = """
        SELECT s.merchant_id, s.secret_key_id
          FROM unnest($1::text[], $2::text[]) AS k(merchant_id, secret_key_id)
         CROSS JOIN LATERAL (SELECT s.merchant_id, s.secret_key_id FROM secret_keys s
                              WHERE s.merchant_id = k.merchant_id AND s.secret_key_id = k.secret_key_id AND s.revoked_at IS NULL
                              LIMIT 1) AS s
        """;

    // Which meter and price version each slug names now: the reports were priced with a cached copy, and the poster starts
    // over when one moved.
    private const string SelectLiveMeters = """
        SELECT m.merchant_id, m.meter_slug, m.meter_id, m.current_version
          FROM unnest($1::text[], $2::text[]) AS k(merchant_id, meter_slug)
         CROSS JOIN LATERAL (SELECT m.merchant_id, m.meter_slug, m.meter_id, m.current_version FROM meters m
                              WHERE m.merchant_id = k.merchant_id AND m.meter_slug = k.meter_slug AND m.deleted_at IS NULL
                              LIMIT 1) AS m
        """;

    // The tables UsagePeriods and the usage reads touch.
    private static readonly string[] UsageTables = ["usage_totals", "subscriptions", "customers"];

    /// <summary>Every read, in the order it is sent and its results are read.</summary>
    public static readonly IReadOnlyList<LockedRead> All =
    [
        new("lock usage totals", LockUsage, UsageKeys, null, UsageTables),
        new("read usage totals", SelectUsage, UsageKeys, (r, s) =>
            s.Usage[(r.GetString(0), r.GetString(1), r.GetString(2), Utc(r.GetDateTime(3)))] =
                new LockedState.UsageRow(Utc(r.GetDateTime(4)), r.IsDBNull(5) ? null : Utc(r.GetDateTime(5)), r.GetDecimal(6)),
            UsageTables),
        new("lock balances", LockBalances,
            reports => Pairs(Customers(reports).SelectMany(c => new[]
            {
                (c.Merchant, LedgerAccounts.CreditsBundle(c.Customer)), (c.Merchant, LedgerAccounts.CreditsCycle(c.Customer)),
                (c.Merchant, LedgerAccounts.Receivable(c.Customer)),
            })),
            (r, s) => s.Balances[(r.GetString(0), r.GetString(1))] = r.GetDecimal(2), "account_balances"),
        new("lock holds", LockHolds,
            reports => Pairs(reports.Where(p => p.Body.HoldId is not null).Select(p => (p.MerchantId, p.Body.HoldId!))),
            (r, s) => s.Holds[(r.GetString(0), r.GetString(1))] = new LockedState.HoldState(r.GetString(2), r.GetString(3), Utc(r.GetDateTime(4))), "holds"),
        new("read replays", SelectExisting,
            reports => Pairs(reports.Select(p => (p.MerchantId, p.RequestId))),
            (r, s) => s.Existing[(r.GetString(0), r.GetString(1))] =
                new LockedState.Stored(r.GetFieldValue<byte[]>(2), r.GetInt16(3), StoredReport.Body(r.GetString(4))),
            "requests", "ledger_transactions"),
        new("read customers", SelectCustomers,
            reports => Pairs(Customers(reports)),
            (r, s) => s.Customers[(r.GetString(0), r.GetString(1))] = new LockedState.BillingContext(
                r.IsDBNull(2) ? null : Utc(r.GetDateTime(2)), r.IsDBNull(3) ? null : r.GetString(3),
                r.IsDBNull(4) ? null : r.GetDecimal(4), r.IsDBNull(5) ? null : r.GetDecimal(5), r.GetInt32(6)),
            "customers", "subscriptions", "credit_bundles", "ledger_transactions"),
        new("read plan meters", SelectPlanMeters,
            reports => Pairs(Customers(reports)),
            (r, s) => s.PlanMeters.Add((r.GetString(0), r.GetString(1), r.GetString(2))), "subscriptions", "plan_meters"),
        new("read live keys", SelectLiveKeys,
            reports => Pairs(reports.Where(p => p.SecretKeyId is not null).Select(p => (p.MerchantId, p.SecretKeyId!))),
            (r, s) => s.LiveKeys.Add((r.GetString(0), r.GetString(1))), "secret_keys"),
        new("read live meters", SelectLiveMeters,
            reports => Pairs(reports.Select(p => (p.MerchantId, p.MeterSlug))),
            (r, s) => s.LiveMeters[(r.GetString(0), r.GetString(1))] = (r.GetString(2), r.GetInt32(3)), "meters"),
    ];

    // Every statement of the posting transaction looks rows up by key from arrays of keys. Planned for those arrays,
    // PostgreSQL turns the lookups into hash joins over whole tables: every account, balance, customer and usage total
    // read per transaction for a batch on a ledger of 1,200 customers (ReportPlanTests, run without these settings).
    // With scans and hash/merge joins off, what is left is nested loops of index lookups, which cost what the batch
    // touches, not what the ledger holds: single reports at 64 connections 2,096 -> 3,334/s, batches of 1,000 3,942 ->
    // 5,019 reports/s (scripts/bench.sh, two short runs). Materialize off: before a column is analysed, PostgreSQL
    // guesses `deleted_at IS NULL` true for 0.5% of rows, and read the merchant's every customer into a materialised list
    // scanned once per report (ReportPlanUnanalysedTests). Local to the transaction (and the triggers it fires).
    // Plans are made for the keys at hand at every execution unless the poster says otherwise before a read
    // (GenericPlans, for a read whose tables have settled statistics, PostingPlans): PostgreSQL's own choice (`auto`)
    // would keep the custom plans of a single report, which look cheaper than a plan guessing 10 keys per array. The
    // write follows the same rule on stricter terms (ReportWriter.RunsCachedPlan). The statement triggers it fires take
    // no parameters, so PostgreSQL plans them once per connection whatever the mode; the balance webhook trigger fired at
    // COMMIT keeps PostgreSQL's default through its function's own setting.
    public static readonly IReadOnlyList<(string Name, string Value)> PlanSettings =
    [
        ("enable_seqscan", "off"),
        ("enable_hashjoin", "off"),
        ("enable_mergejoin", "off"),
        ("enable_bitmapscan", "off"),
        ("enable_material", "off"),
        ("plan_cache_mode", "force_custom_plan"),
    ];

    /// <summary>
    /// The transaction's settings in one statement (one row, to be stepped over) rather than one SET each: the lock
    /// timeout (its one parameter, in milliseconds) and <see cref="PlanSettings"/>.
    /// </summary>
    public static readonly string Settings = "SELECT set_config('lock_timeout', $1::int || 'ms', true), " +
        string.Join(", ", PlanSettings.Select(s => $"set_config('{s.Name}', '{s.Value}', true)"));

    /// <summary>What the reads after it run: each its cached plan, made once per connection without the keys.</summary>
    public const string GenericPlans = "SELECT set_config('plan_cache_mode', 'force_generic_plan', true)";

    /// <summary>What the statements after it run: plans made for their values (the settings' own choice).</summary>
    public const string CustomPlans = "SELECT set_config('plan_cache_mode', 'force_custom_plan', true)";

    public static NpgsqlBatchCommand SettingsCommand(int lockTimeoutMs) =>
        new(Settings) { Parameters = { new NpgsqlParameter { Value = lockTimeoutMs, NpgsqlDbType = NpgsqlDbType.Integer } } };

    // The usage lock and the usage read take the same keys: one per report with a meter, by when its usage occurred.
    private static NpgsqlParameter[] UsageKeys(IReadOnlyList<PreparedReport> reports)
    {
        var keys = reports.Where(p => p.Meter is not null).Select(p => (p.MerchantId, p.Meter!.MeterId, p.CustomerKey, p.OccurredAt)).Distinct().ToList();
        return
        [
            Texts(keys.Select(k => k.MerchantId)), Texts(keys.Select(k => k.MeterId)), Texts(keys.Select(k => k.CustomerKey)),
            new NpgsqlParameter { Value = keys.Select(k => k.OccurredAt.UtcDateTime).ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.TimestampTz },
        ];
    }

    private static IEnumerable<(string Merchant, string Customer)> Customers(IReadOnlyList<PreparedReport> reports) =>
        reports.Where(p => p.Body.Customer is not null).Select(p => (p.MerchantId, p.Body.Customer!));

    private static NpgsqlParameter[] Pairs(IEnumerable<(string, string)> pairs)
    {
        var distinct = pairs.Distinct().ToList();
        return [Texts(distinct.Select(p => p.Item1)), Texts(distinct.Select(p => p.Item2))];
    }

    // Types stated, never inferred from the values: a prepared statement whose parameter types change is run unprepared.
    private static NpgsqlParameter Texts(IEnumerable<string> values) =>
        new() { Value = values.ToArray(), NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text };

    private static DateTimeOffset Utc(DateTime d) => new(DateTime.SpecifyKind(d, DateTimeKind.Utc));
}
