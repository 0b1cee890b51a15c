using Npgsql;
using NpgsqlTypes;

namespace Lava.Billing.Requests;

/// <summary>
/// Posts many reports (of one or several merchants) in one database transaction and two round trips:
/// <see cref="LockAsync"/> (BEGIN; lock the usage totals, then the customers' balance rows, then the holds, each in one
/// global sorted order so concurrent batches cannot deadlock; then read replays and billing contexts, after the locks,
/// so they see whatever committed while this batch waited) and <see cref="CommitAsync"/> (one statement writes every
/// request, ledger transaction, entry, usage total and hold capture, then COMMIT). Raw Npgsql batches rather than
/// Dapper because Dapper cannot send several statements as one round trip.
/// </summary>
public sealed class ReportBatchStore(NpgsqlDataSource db)
{
    private const int LockTimeoutMs = 5_000;

    public sealed record UsageKey(string MerchantId, string MeterId, string CustomerKey, DateTimeOffset CalendarPeriod);

    public sealed record Stored(byte[] Fingerprint, int StatusCode, string Response);

    public sealed record BillingContext(DateTimeOffset? CycleStartAt, string? PlanId, decimal? TopUpCost, decimal? TopUpCredit, int TopUpsUsed);

    public sealed record HoldState(string CustomerId, string Status, DateTimeOffset ExpiresAt);

    /// <summary>Everything read under lock; keys are (merchant, id) pairs.</summary>
    public sealed class Locked
    {
        public Dictionary<(string Merchant, string Meter, string Customer, DateTimeOffset Period), decimal> Usage { get; } = [];
        public Dictionary<(string Merchant, string Account), decimal> Balances { get; } = [];
        public Dictionary<(string Merchant, string Hold), HoldState> Holds { get; } = [];
        public Dictionary<(string Merchant, string Request), Stored> Existing { get; } = [];
        public Dictionary<(string Merchant, string Customer), BillingContext> Customers { get; } = [];
        public HashSet<(string Merchant, string Plan, string Meter)> PlanMeters { get; } = [];
        public HashSet<(string Merchant, string SecretKey)> LiveKeys { get; } = [];
        public Dictionary<(string Merchant, string MeterSlug), (string MeterId, int Version)> LiveMeters { get; } = [];
    }

    // Usage accumulates per subscription cycle, or per UTC calendar month without one. DISTINCT: two keys of one
    // customer and meter may fall in the same cycle, and ON CONFLICT may touch a row only once per statement.
    private const string UsageKeys = """
        SELECT DISTINCT k.merchant_id, k.meter_id, k.customer_id,
               coalesce((SELECT s.cycle_start_at FROM subscriptions s
                          WHERE s.merchant_id = k.merchant_id AND s.customer_id = k.customer_id AND s.status = 'active'), k.period)
                   AS period_start
          FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS k(merchant_id, meter_id, customer_id, period)
         WHERE k.customer_id = ''
            OR EXISTS (SELECT 1 FROM customers c WHERE c.merchant_id = k.merchant_id AND c.customer_id = k.customer_id AND c.deleted_at IS NULL)
        """;

    // Creates the missing totals and locks them all. "DO UPDATE ... WHERE false" locks a conflicting row without writing
    // a new version of it (the write step updates it once, later).
    private const string LockUsage = $"""
        INSERT INTO usage_totals (merchant_id, meter_id, customer_id, period_start, quantity)
        SELECT merchant_id, meter_id, customer_id, period_start, 0::numeric FROM ({UsageKeys}) AS k
         ORDER BY 1, 2, 3, 4
        ON CONFLICT (merchant_id, meter_id, customer_id, period_start) DO UPDATE SET quantity = usage_totals.quantity WHERE false
        """;

    // A statement after the lock, so its snapshot sees the latest committed quantity of every row it locked. One primary
    // key lookup per key, whatever the plan cache decides (LIMIT 1 keeps the lateral from becoming a hash join).
    private const string SelectUsage = $"""
        SELECT u.merchant_id, u.meter_id, u.customer_id, u.period_start, u.quantity
          FROM ({UsageKeys}) AS k
         CROSS JOIN LATERAL (SELECT * FROM usage_totals t
                              WHERE t.merchant_id = k.merchant_id AND t.meter_id = k.meter_id AND t.customer_id = k.customer_id
                                AND t.period_start = k.period_start
                              LIMIT 1) AS u
        """;

    private const string LockBalances = """
        SELECT b.merchant_id, b.account_id, b.balance
          FROM account_balances b
          JOIN unnest($1::text[], $2::text[]) AS k(merchant_id, account_id) ON b.merchant_id = k.merchant_id AND b.account_id = k.account_id
         ORDER BY b.merchant_id, b.account_id
           FOR UPDATE OF b
        """;

    private const string LockHolds = """
        SELECT h.merchant_id, h.hold_id, h.customer_id, h.status, h.expires_at
          FROM holds h
          JOIN unnest($1::text[], $2::text[]) AS k(merchant_id, hold_id) ON h.merchant_id = k.merchant_id AND h.hold_id = k.hold_id
         ORDER BY h.merchant_id, h.hold_id
           FOR UPDATE OF h
        """;

    private const string SelectExisting = """
        SELECT r.merchant_id, r.request_id, r.fingerprint, r.status_code, r.response
          FROM requests r
          JOIN unnest($1::text[], $2::text[]) AS k(merchant_id, request_id) ON r.merchant_id = k.merchant_id AND r.request_id = k.request_id
        """;

    // Laterals: a left join to the bundle (keyed by a column of the nullable subscription side) was planned as one read of
    // every bundle, materialised (ReportPlanTests). The one active subscription and the bundle are unique by key.
    private const string SelectCustomers = """
        SELECT c.merchant_id, c.customer_id, s.cycle_start_at, s.plan_id, b.cost, b.credit_amount,
               (SELECT count(*)::int FROM ledger_transactions t
                 WHERE t.merchant_id = c.merchant_id AND t.customer_id = c.customer_id AND t.kind = 'auto_top_up'
                   AND t.created_at >= s.cycle_start_at)
          FROM unnest($1::text[], $2::text[]) AS k(merchant_id, customer_id)
          JOIN customers c ON c.merchant_id = k.merchant_id AND c.customer_id = k.customer_id AND c.deleted_at IS NULL
          LEFT JOIN LATERAL (SELECT * FROM subscriptions s
                              WHERE s.merchant_id = c.merchant_id AND s.customer_id = c.customer_id AND s.status = 'active'
                              LIMIT 1) AS s ON true
          LEFT JOIN LATERAL (SELECT * FROM credit_bundles b
                              WHERE b.merchant_id = s.merchant_id AND b.credit_bundle_id = s.auto_top_up_bundle_id AND b.deleted_at IS NULL
                              LIMIT 1) AS b ON true
        """;

    private const string SelectPlanMeters = """
        SELECT pm.merchant_id, pm.plan_id, pm.meter_id
          FROM plan_meters pm
          JOIN subscriptions s ON s.merchant_id = pm.merchant_id AND s.plan_id = pm.plan_id AND s.status = 'active'
          JOIN unnest($1::text[], $2::text[]) AS k(merchant_id, customer_id) ON s.merchant_id = k.merchant_id AND s.customer_id = k.customer_id
        """;

    // The reporting keys, checked again inside the transaction that posts: auth may have answered from its cache.
    private const string SelectLiveKeys = """
        SELECT s.merchant_id, s.secret_key_id
          FROM unnest($1::text[], $2::text[]) AS k(merchant_id, secret_key_id)
          JOIN secret_keys s ON s.merchant_id = k.merchant_id AND s.secret_key_id = k.secret_key_id AND s.revoked_at IS NULL
        """;

    // Which meter and price version each slug names now: the reporter priced with a cached copy and starts over when
    // one moved.
    private const string SelectLiveMeters = """
        SELECT m.merchant_id, m.meter_slug, m.meter_id, m.current_version
          FROM unnest($1::text[], $2::text[]) AS k(merchant_id, meter_slug)
          JOIN meters m ON m.merchant_id = k.merchant_id AND m.meter_slug = k.meter_slug AND m.deleted_at IS NULL
        """;

    // Every statement of the posting transaction looks rows up by key from arrays of keys. Planned for those arrays,
    // PostgreSQL turns the lookups into hash joins over whole tables: every account, balance, customer and usage total
    // read per transaction for a batch on a ledger of 1,200 customers (ReportPlanTests, run without these settings).
    // With scans and hash/merge joins off, what is left is nested loops of index lookups, which cost what the batch
    // touches, not what the ledger holds: single reports at 64 connections 2,096 -> 3,334/s, batches of 1,000 3,942 ->
    // 5,019 reports/s (scripts/bench.sh, two short runs). SET LOCAL: this transaction only (and the triggers it fires).
    // Plans stay custom (made at each execution): a generic plan is made once per connection, and on a fresh database,
    // where every table looks empty, the replay read's plan went through requests_by_occurred_at (every request of the
    // merchant per lookup) until autovacuum analysed the table. Materialize off: before a column is analysed, PostgreSQL
    // guesses `deleted_at IS NULL` true for 0.5% of rows, and read the merchant's every customer into a materialised list
    // scanned once per report (ReportPlanUnanalysedTests).
    internal static readonly string[] PlanSettings =
    [
        "SET LOCAL enable_seqscan = off",
        "SET LOCAL enable_hashjoin = off",
        "SET LOCAL enable_mergejoin = off",
        "SET LOCAL enable_bitmapscan = off",
        "SET LOCAL enable_material = off",
    ];

    /// <summary>What a batch locks and reads, by (merchant, id) pairs.</summary>
    public sealed record LockRequest(
        IReadOnlyCollection<UsageKey> Usage, IReadOnlyCollection<(string Merchant, string Account)> Accounts,
        IReadOnlyCollection<(string Merchant, string Hold)> Holds, IReadOnlyCollection<(string Merchant, string Request)> Requests,
        IReadOnlyCollection<(string Merchant, string Customer)> Customers, IReadOnlyCollection<(string Merchant, string SecretKey)> Keys,
        IReadOnlyCollection<(string Merchant, string MeterSlug)> Meters);

    /// <summary>The lock step's statements after BEGIN and the settings, in the order <see cref="LockAsync"/> reads them.</summary>
    internal static IEnumerable<NpgsqlBatchCommand> LockCommands(LockRequest request)
    {
        var (usage, accounts, holds, requests, customers, keys, meters) = request;
        // The usage lock and the usage read take the same keys: the arrays are built once.
        object[] usageKeys = [Texts(usage, k => k.MerchantId), Texts(usage, k => k.MeterId), Texts(usage, k => k.CustomerKey),
            usage.Select(k => k.CalendarPeriod.UtcDateTime).ToArray()];
        yield return Command(LockUsage, usageKeys);
        yield return Command(SelectUsage, usageKeys);
        yield return Command(LockBalances, Texts(accounts, a => a.Merchant), Texts(accounts, a => a.Account));
        yield return Command(LockHolds, Texts(holds, h => h.Merchant), Texts(holds, h => h.Hold));
        yield return Command(SelectExisting, Texts(requests, r => r.Merchant), Texts(requests, r => r.Request));
        yield return Command(SelectCustomers, Texts(customers, c => c.Merchant), Texts(customers, c => c.Customer));
        yield return Command(SelectPlanMeters, Texts(customers, c => c.Merchant), Texts(customers, c => c.Customer));
        yield return Command(SelectLiveKeys, Texts(keys, k => k.Merchant), Texts(keys, k => k.SecretKey));
        yield return Command(SelectLiveMeters, Texts(meters, m => m.Merchant), Texts(meters, m => m.MeterSlug));
    }

    /// <summary>Opens a connection, begins the transaction and reads everything the batch needs under lock.</summary>
    public async Task<(NpgsqlConnection Connection, Locked State)> LockAsync(LockRequest request, CancellationToken ct)
    {
        var connection = await db.OpenConnectionAsync(ct);
        try
        {
            await using var batch = new NpgsqlBatch(connection);
            batch.BatchCommands.Add(new NpgsqlBatchCommand("BEGIN"));
            // A row held elsewhere for this long fails the batch, which then posts its reports one by one, so one
            // contended customer cannot stall the others for the whole command timeout.
            batch.BatchCommands.Add(new NpgsqlBatchCommand($"SET LOCAL lock_timeout = '{LockTimeoutMs}ms'"));
            foreach (var setting in PlanSettings) batch.BatchCommands.Add(new NpgsqlBatchCommand(setting));
            foreach (var command in LockCommands(request)) batch.BatchCommands.Add(command);
            var state = new Locked();
            await using (var reader = await batch.ExecuteReaderAsync(ct))
            {
                // BEGIN, SET and the usage lock return no rows: the reader starts at the usage totals.
                while (await reader.ReadAsync(ct))
                    state.Usage[(reader.GetString(0), reader.GetString(1), reader.GetString(2), Utc(reader.GetDateTime(3)))] = reader.GetDecimal(4);
                await reader.NextResultAsync(ct);
                while (await reader.ReadAsync(ct)) state.Balances[(reader.GetString(0), reader.GetString(1))] = reader.GetDecimal(2);
                await reader.NextResultAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    state.Holds[(reader.GetString(0), reader.GetString(1))] = new HoldState(reader.GetString(2), reader.GetString(3),
                        Utc(reader.GetDateTime(4)));
                }
                await reader.NextResultAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    state.Existing[(reader.GetString(0), reader.GetString(1))] =
                        new Stored(reader.GetFieldValue<byte[]>(2), reader.GetInt16(3), reader.GetString(4));
                }
                await reader.NextResultAsync(ct);
                while (await reader.ReadAsync(ct))
                {
                    state.Customers[(reader.GetString(0), reader.GetString(1))] = new BillingContext(
                        reader.IsDBNull(2) ? null : Utc(reader.GetDateTime(2)), reader.IsDBNull(3) ? null : reader.GetString(3),
                        reader.IsDBNull(4) ? null : reader.GetDecimal(4), reader.IsDBNull(5) ? null : reader.GetDecimal(5),
                        reader.GetInt32(6));
                }
                await reader.NextResultAsync(ct);
                while (await reader.ReadAsync(ct)) state.PlanMeters.Add((reader.GetString(0), reader.GetString(1), reader.GetString(2)));
                await reader.NextResultAsync(ct);
                while (await reader.ReadAsync(ct)) state.LiveKeys.Add((reader.GetString(0), reader.GetString(1)));
                await reader.NextResultAsync(ct);
                while (await reader.ReadAsync(ct)) state.LiveMeters[(reader.GetString(0), reader.GetString(1))] = (reader.GetString(2), reader.GetInt32(3));
            }
            return (connection, state);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    public sealed record NewRequest(
        string MerchantId, string RequestId, byte[] Fingerprint, string Mode, string? CustomerId, string MeterId, int PriceVersion,
        long InputTokens, long OutputTokens, long InputCharacters, long OutputCharacters, decimal InputSeconds, decimal OutputSeconds,
        decimal? Cost, decimal ChargeAmount, string MetadataJson, DateTimeOffset OccurredAt, DateTimeOffset CreatedAt,
        string TransactionId, int StatusCode, string Response, string? HoldId);

    public sealed record LedgerTransaction(string MerchantId, string TransactionId, string Kind, string Reference, string? CustomerId,
        string? MeterId, int? PriceVersion, string LineageJson, DateTimeOffset EffectiveAt, DateTimeOffset CreatedAt);

    public sealed record Entry(string MerchantId, string TransactionId, string AccountId, decimal Amount);

    public sealed record UsageIncrement(string MerchantId, string MeterId, string CustomerKey, DateTimeOffset PeriodStart, decimal Quantity);

    public sealed record HoldCapture(string MerchantId, string HoldId, decimal Charge, string RequestId, DateTimeOffset At);

    public sealed record Writes(
        List<NewRequest> Requests, List<LedgerTransaction> Transactions, List<Entry> Entries, List<UsageIncrement> Usage, List<HoldCapture> Holds);

    // A plain INSERT: a request id taken meanwhile by another transaction fails the whole statement (23505), and the
    // caller retries the batch, which then answers it as a replay.
    private const string InsertAll = """
        WITH req AS (
            INSERT INTO requests (merchant_id, request_id, fingerprint, mode, customer_id, meter_id, price_version,
                                  input_tokens, output_tokens, input_characters, output_characters, input_seconds, output_seconds,
                                  cost, charge_amount, metadata, occurred_at, created_at, transaction_id, status_code, response, hold_id)
            SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[], $5::text[], $6::text[], $7::int[],
                                 $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::numeric[], $13::numeric[],
                                 $14::numeric[], $15::numeric[], $16::jsonb[], $17::timestamptz[], $18::timestamptz[], $19::text[],
                                 $20::smallint[], $21::text[], $22::text[])
        ), txn AS (
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, customer_id, meter_id, price_version,
                                             lineage, effective_at, created_at)
            SELECT * FROM unnest($23::text[], $24::text[], $25::text[], $26::text[], $27::text[], $28::text[], $29::int[],
                                 $30::jsonb[], $31::timestamptz[], $32::timestamptz[])
        ), ent AS (
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount)
            SELECT e.merchant_id, e.transaction_id, e.account_id, a.currency, e.amount
              FROM unnest($33::text[], $34::text[], $35::text[], $36::numeric[]) AS e(merchant_id, transaction_id, account_id, amount)
              JOIN accounts a ON a.merchant_id = e.merchant_id AND a.account_id = e.account_id
        ), used AS (
            UPDATE usage_totals u SET quantity = u.quantity + d.quantity
              FROM unnest($37::text[], $38::text[], $39::text[], $40::timestamptz[], $41::numeric[])
                   AS d(merchant_id, meter_id, customer_id, period_start, quantity)
             WHERE u.merchant_id = d.merchant_id AND u.meter_id = d.meter_id AND u.customer_id = d.customer_id
               AND u.period_start = d.period_start
        ), captured AS (
            UPDATE holds h SET status = 'captured', captured_amount = least(h.amount, c.charge), request_id = c.request_id, closed_at = c.at
              FROM unnest($42::text[], $43::text[], $44::numeric[], $45::text[], $46::timestamptz[]) AS c(merchant_id, hold_id, charge, request_id, at)
             WHERE h.merchant_id = c.merchant_id AND h.hold_id = c.hold_id AND h.status = 'active'
        )
        SELECT 1
        """;

    /// <summary>The write step's one statement (<see cref="CommitAsync"/> sends it with COMMIT).</summary>
    internal static NpgsqlBatchCommand WriteCommand(Writes w)
    {
        var r = w.Requests;
        var t = w.Transactions;
        var e = w.Entries;
        var u = w.Usage;
        var h = w.Holds;
        return Command(InsertAll,
            Texts(r, x => x.MerchantId), Texts(r, x => x.RequestId), r.Select(x => x.Fingerprint).ToArray(), Texts(r, x => x.Mode),
            Texts(r, x => x.CustomerId), Texts(r, x => x.MeterId), r.Select(x => x.PriceVersion).ToArray(),
            r.Select(x => x.InputTokens).ToArray(), r.Select(x => x.OutputTokens).ToArray(), r.Select(x => x.InputCharacters).ToArray(),
            r.Select(x => x.OutputCharacters).ToArray(), r.Select(x => x.InputSeconds).ToArray(), r.Select(x => x.OutputSeconds).ToArray(),
            r.Select(x => x.Cost).ToArray(), r.Select(x => x.ChargeAmount).ToArray(), Texts(r, x => x.MetadataJson),
            r.Select(x => x.OccurredAt.UtcDateTime).ToArray(), r.Select(x => x.CreatedAt.UtcDateTime).ToArray(), Texts(r, x => x.TransactionId),
            r.Select(x => (short)x.StatusCode).ToArray(), Texts(r, x => x.Response), Texts(r, x => x.HoldId),
            Texts(t, x => x.MerchantId), Texts(t, x => x.TransactionId), Texts(t, x => x.Kind), Texts(t, x => x.Reference),
            Texts(t, x => x.CustomerId), Texts(t, x => x.MeterId), t.Select(x => x.PriceVersion).ToArray(), Texts(t, x => x.LineageJson),
            t.Select(x => x.EffectiveAt.UtcDateTime).ToArray(), t.Select(x => x.CreatedAt.UtcDateTime).ToArray(),
            Texts(e, x => x.MerchantId), Texts(e, x => x.TransactionId), Texts(e, x => x.AccountId), e.Select(x => x.Amount).ToArray(),
            Texts(u, x => x.MerchantId), Texts(u, x => x.MeterId), Texts(u, x => x.CustomerKey), u.Select(x => x.PeriodStart.UtcDateTime).ToArray(),
            u.Select(x => x.Quantity).ToArray(),
            Texts(h, x => x.MerchantId), Texts(h, x => x.HoldId), h.Select(x => x.Charge).ToArray(), Texts(h, x => x.RequestId),
            h.Select(x => x.At.UtcDateTime).ToArray());
    }

    /// <summary>Writes everything and commits. Throws <see cref="PostgresException"/> (23505) when a request id was taken.</summary>
    public static async Task CommitAsync(NpgsqlConnection connection, Writes w, CancellationToken ct)
    {
        await using var batch = new NpgsqlBatch(connection);
        batch.BatchCommands.Add(WriteCommand(w));
        batch.BatchCommands.Add(new NpgsqlBatchCommand("COMMIT"));
        await batch.ExecuteNonQueryAsync(ct);
    }

    public static async Task RollbackAsync(NpgsqlConnection connection)
    {
        if (connection.State != System.Data.ConnectionState.Open) return;
        await using var rollback = new NpgsqlCommand("ROLLBACK", connection);
        await rollback.ExecuteNonQueryAsync(CancellationToken.None);
    }

    private static DateTimeOffset Utc(DateTime d) => new(DateTime.SpecifyKind(d, DateTimeKind.Utc));

    private static string?[] Texts<T>(IEnumerable<T> items, Func<T, string?> text) => items.Select(text).ToArray();

    // Every parameter's type is stated, never inferred from its value: Npgsql types an empty DateTime[] as timestamp[]
    // and a non-empty one as timestamptz[], and runs a prepared statement unprepared whenever a call's parameter types
    // differ from those it was prepared with (the write of a report with a hold and of one without alternated, and the
    // statement log showed the write parsed again at half of the gateway's calls).
    private static NpgsqlBatchCommand Command(string sql, params object[] args)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var arg in args)
        {
            var element = arg switch
            {
                string?[] => NpgsqlDbType.Text,
                decimal?[] or decimal[] => NpgsqlDbType.Numeric,
                int?[] or int[] => NpgsqlDbType.Integer,
                long[] => NpgsqlDbType.Bigint,
                short[] => NpgsqlDbType.Smallint,
                DateTime[] => NpgsqlDbType.TimestampTz,
                byte[][] => NpgsqlDbType.Bytea,
                _ => throw new ArgumentException($"no PostgreSQL type stated for a {arg.GetType().Name} parameter"),
            };
            command.Parameters.Add(new NpgsqlParameter { Value = arg, NpgsqlDbType = NpgsqlDbType.Array | element });
        }
        return command;
    }
}
