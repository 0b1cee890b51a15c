using Npgsql;
using NpgsqlTypes;

namespace Lava.Billing.Requests;

/// <summary>
/// The report hot path in two round trips: <see cref="BeginAsync"/> (BEGIN, replay check, lock the usage total and the
/// customer's balances, read the billing context) and <see cref="PostAsync"/> (one statement writes the request, its
/// ledger transactions, entries, usage total and hold capture, then COMMIT). Raw Npgsql batches rather than Dapper
/// because Dapper cannot send several statements as one batch; the SQL still sits next to the method that runs it.
/// Lock order, shared by every writer: usage total, then the customer's balance rows in account_id order, then the hold.
/// </summary>
public sealed class RequestStore(NpgsqlDataSource db)
{
    public sealed record Stored(byte[] Fingerprint, int StatusCode, string Response);

    /// <summary>What the customer's plan says about this report, read after the balance lock so it is current.</summary>
    public sealed record BillingContext(
        bool HasSubscription, bool MeterLinked, decimal CreditLimit, decimal? TopUpCost, decimal? TopUpCredit, int TopUpsUsed);

    public sealed record HoldState(decimal Amount, string Status, DateTimeOffset ExpiresAt);

    /// <summary>What a report needs to know before it can be priced, read under lock.</summary>
    public sealed record Position(DateTimeOffset PeriodStart, decimal UsedBefore, Ledger.CustomerBalances Balances,
        BillingContext? Billing, HoldState? Hold);

    public enum BeginStatus { Ready, Existing, CustomerMissing, HoldMissing, LostRace }

    public sealed record Begin(BeginStatus Status, Stored? Existing = null, Position? Position = null);

    private const string SelectExisting = """
        SELECT fingerprint, status_code, response FROM requests WHERE merchant_id = $1 AND request_id = $2
        """;

    // Locks (and creates) the usage total unless this is a replay or the customer is unknown; returns usage so far.
    // Usage accumulates per subscription cycle, or per UTC calendar month ($5) without one.
    private const string LockUsageTotal = """
        INSERT INTO usage_totals (merchant_id, meter_id, customer_id, period_start, quantity)
        SELECT $1, $4, coalesce($3, ''),
               coalesce((SELECT cycle_start_at FROM subscriptions WHERE merchant_id = $1 AND customer_id = $3 AND status = 'active'), $5),
               0
         WHERE NOT EXISTS (SELECT 1 FROM requests WHERE merchant_id = $1 AND request_id = $2)
           AND ($3 IS NULL OR EXISTS (SELECT 1 FROM customers WHERE merchant_id = $1 AND customer_id = $3 AND deleted_at IS NULL))
        ON CONFLICT (merchant_id, meter_id, customer_id, period_start) DO UPDATE SET quantity = usage_totals.quantity
        RETURNING period_start, quantity
        """;

    private const string LockBalances = """
        SELECT account_id, balance FROM account_balances
         WHERE merchant_id = $1 AND account_id = ANY($6)
           AND NOT EXISTS (SELECT 1 FROM requests WHERE merchant_id = $1 AND request_id = $2)
         ORDER BY account_id
           FOR UPDATE
        """;

    private const string SelectBillingContext = """
        SELECT s.subscription_id IS NOT NULL,
               coalesce(EXISTS (SELECT 1 FROM plan_meters pm WHERE pm.merchant_id = $1 AND pm.plan_id = s.plan_id AND pm.meter_id = $4), false),
               c.credit_limit,
               b.cost,
               b.credit_amount,
               (SELECT count(*)::int FROM ledger_transactions t
                 WHERE t.merchant_id = $1 AND t.customer_id = $3 AND t.kind = 'auto_top_up' AND t.created_at >= s.cycle_start_at)
          FROM customers c
          LEFT JOIN subscriptions s ON s.merchant_id = c.merchant_id AND s.customer_id = c.customer_id AND s.status = 'active'
          LEFT JOIN credit_bundles b ON b.merchant_id = s.merchant_id AND b.credit_bundle_id = s.auto_top_up_bundle_id AND b.deleted_at IS NULL
         WHERE c.merchant_id = $1 AND c.customer_id = $3 AND c.deleted_at IS NULL
        """;

    private const string LockHold = """
        SELECT amount, status, expires_at FROM holds
         WHERE merchant_id = $1 AND hold_id = $7 AND customer_id = $3
           FOR UPDATE
        """;

    public async Task<(NpgsqlConnection Connection, Begin State)> BeginAsync(
        string merchantId, string requestId, string? customerId, string meterId, DateTimeOffset calendarPeriodStart,
        string? holdId, CancellationToken ct)
    {
        var connection = await db.OpenConnectionAsync(ct);
        try
        {
            var accounts = customerId is null
                ? Array.Empty<string>()
                : [Ledger.LedgerAccounts.CreditsBundle(customerId), Ledger.LedgerAccounts.CreditsCycle(customerId), Ledger.LedgerAccounts.Receivable(customerId)];
            object?[] args = [merchantId, requestId, customerId, meterId, calendarPeriodStart, accounts, holdId];
            await using var batch = new NpgsqlBatch(connection);
            batch.BatchCommands.Add(new NpgsqlBatchCommand("BEGIN"));
            batch.BatchCommands.Add(Command(SelectExisting, args));
            batch.BatchCommands.Add(Command(LockUsageTotal, args));
            batch.BatchCommands.Add(Command(LockBalances, args));
            if (customerId is not null) batch.BatchCommands.Add(Command(SelectBillingContext, args));
            if (holdId is not null) batch.BatchCommands.Add(Command(LockHold, args));
            await using var reader = await batch.ExecuteReaderAsync(ct);

            // BEGIN returns no rows, so the reader starts at the replay check.
            Stored? existing = null;
            if (await reader.ReadAsync(ct)) existing = new Stored(reader.GetFieldValue<byte[]>(0), reader.GetInt16(1), reader.GetString(2));
            await reader.NextResultAsync(ct);
            (DateTimeOffset Start, decimal Used)? usage = await reader.ReadAsync(ct)
                ? (new DateTimeOffset(reader.GetDateTime(0), TimeSpan.Zero), reader.GetDecimal(1))
                : null;
            await reader.NextResultAsync(ct);
            var balances = new Dictionary<string, decimal>(3);
            while (await reader.ReadAsync(ct)) balances[reader.GetString(0)] = reader.GetDecimal(1);
            BillingContext? billing = null;
            if (customerId is not null)
            {
                await reader.NextResultAsync(ct);
                if (await reader.ReadAsync(ct))
                {
                    billing = new BillingContext(reader.GetBoolean(0), reader.GetBoolean(1), reader.GetDecimal(2),
                        reader.IsDBNull(3) ? null : reader.GetDecimal(3), reader.IsDBNull(4) ? null : reader.GetDecimal(4), reader.GetInt32(5));
                }
            }
            HoldState? hold = null;
            if (holdId is not null)
            {
                await reader.NextResultAsync(ct);
                if (await reader.ReadAsync(ct))
                    hold = new HoldState(reader.GetDecimal(0), reader.GetString(1), new DateTimeOffset(reader.GetDateTime(2), TimeSpan.Zero));
            }
            await reader.DisposeAsync();

            if (existing is not null) return (connection, new Begin(BeginStatus.Existing, existing));
            if (customerId is not null && billing is null) return (connection, new Begin(BeginStatus.CustomerMissing));
            // The later statements see a newer snapshot: if a concurrent duplicate committed in between, they found
            // the request and locked nothing. The caller answers that as a replay.
            if (usage is null || balances.Count != accounts.Length) return (connection, new Begin(BeginStatus.LostRace));
            if (holdId is not null && hold is null) return (connection, new Begin(BeginStatus.HoldMissing));
            var position = new Position(usage.Value.Start, usage.Value.Used,
                customerId is null
                    ? new Ledger.CustomerBalances(0, 0, 0)
                    : new Ledger.CustomerBalances(balances[accounts[1]], balances[accounts[0]], balances[accounts[2]]),
                billing, hold);
            return (connection, new Begin(BeginStatus.Ready, Position: position));
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    public sealed record LedgerTransaction(string TransactionId, string Kind, string Reference, string LineageJson);

    public sealed record Entry(string TransactionId, string AccountId, decimal Amount);

    public sealed record NewRequest(
        string MerchantId, string RequestId, byte[] Fingerprint, string Mode, string? CustomerId, string MeterId, int PriceVersion,
        long InputTokens, long OutputTokens, long InputCharacters, long OutputCharacters, decimal InputSeconds, decimal OutputSeconds,
        decimal? Cost, decimal ChargeAmount, string MetadataJson, DateTimeOffset OccurredAt, DateTimeOffset CreatedAt,
        string TransactionId, int StatusCode, string Response, DateTimeOffset PeriodStart, decimal Quantity, string? HoldId,
        IReadOnlyList<LedgerTransaction> Transactions, IReadOnlyList<Entry> Entries);

    // One statement: if the request id was taken meanwhile (a concurrent duplicate committed first), nothing is written.
    private const string InsertAll = """
        WITH req AS (
            INSERT INTO requests (merchant_id, request_id, fingerprint, mode, customer_id, meter_id, price_version,
                                  input_tokens, output_tokens, input_characters, output_characters, input_seconds, output_seconds,
                                  cost, charge_amount, metadata, occurred_at, created_at, transaction_id, status_code, response, hold_id)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::jsonb, $17, $18, $19, $20, $21, $24)
            ON CONFLICT (merchant_id, request_id) DO NOTHING
            RETURNING merchant_id
        ), txn AS (
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, customer_id, meter_id, price_version,
                                             lineage, effective_at, created_at)
            SELECT $1, t.id, t.kind, t.reference, $5, $6, $7, t.lineage::jsonb, $17, $18
              FROM req CROSS JOIN unnest($25::text[], $26::text[], $27::text[], $28::text[]) AS t(id, kind, reference, lineage)
        ), ent AS (
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount)
            SELECT $1, e.transaction_id, e.account_id, a.currency, e.amount
              FROM unnest($29::text[], $30::text[], $31::numeric[]) AS e(transaction_id, account_id, amount)
              JOIN accounts a ON a.merchant_id = $1 AND a.account_id = e.account_id
             WHERE EXISTS (SELECT 1 FROM req)
        ), used AS (
            UPDATE usage_totals SET quantity = quantity + $23
             WHERE merchant_id = $1 AND meter_id = $6 AND customer_id = coalesce($5, '') AND period_start = $22
               AND EXISTS (SELECT 1 FROM req)
        ), captured AS (
            UPDATE holds SET status = 'captured', captured_amount = least(amount, $15), request_id = $2, closed_at = $18
             WHERE merchant_id = $1 AND hold_id = $24 AND status = 'active'
               AND EXISTS (SELECT 1 FROM req)
        )
        SELECT count(*)::int FROM req
        """;

    /// <summary>Writes the report and commits. False when a concurrent duplicate took the request id first.</summary>
    public async Task<bool> PostAsync(NpgsqlConnection connection, NewRequest r, CancellationToken ct)
    {
        await using var batch = new NpgsqlBatch(connection);
        batch.BatchCommands.Add(Command(InsertAll,
            r.MerchantId, r.RequestId, r.Fingerprint, r.Mode, r.CustomerId, r.MeterId, r.PriceVersion,
            r.InputTokens, r.OutputTokens, r.InputCharacters, r.OutputCharacters, r.InputSeconds, r.OutputSeconds,
            r.Cost is { } cost ? cost : TypedNull(NpgsqlDbType.Numeric), r.ChargeAmount, r.MetadataJson, r.OccurredAt, r.CreatedAt,
            r.TransactionId, (short)r.StatusCode, r.Response, r.PeriodStart, r.Quantity, r.HoldId,
            r.Transactions.Select(t => t.TransactionId).ToArray(), r.Transactions.Select(t => t.Kind).ToArray(),
            r.Transactions.Select(t => t.Reference).ToArray(), r.Transactions.Select(t => t.LineageJson).ToArray(),
            r.Entries.Select(e => e.TransactionId).ToArray(), r.Entries.Select(e => e.AccountId).ToArray(),
            r.Entries.Select(e => e.Amount).ToArray()));
        batch.BatchCommands.Add(new NpgsqlBatchCommand("COMMIT"));
        var inserted = (int)(await batch.ExecuteScalarAsync(ct))!;
        return inserted == 1;
    }

    public static async Task RollbackAsync(NpgsqlConnection connection)
    {
        await using var rollback = new NpgsqlCommand("ROLLBACK", connection);
        await rollback.ExecuteNonQueryAsync(CancellationToken.None);
    }

    public async Task<Stored?> FindAsync(string merchantId, string requestId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var command = new NpgsqlCommand(SelectExisting, connection);
        command.Parameters.Add(new NpgsqlParameter { Value = merchantId });
        command.Parameters.Add(new NpgsqlParameter { Value = requestId });
        await using var reader = await command.ExecuteReaderAsync(ct);
        return await reader.ReadAsync(ct) ? new Stored(reader.GetFieldValue<byte[]>(0), reader.GetInt16(1), reader.GetString(2)) : null;
    }

    private static NpgsqlParameter TypedNull(NpgsqlDbType type) => new() { Value = DBNull.Value, NpgsqlDbType = type };

    private static NpgsqlBatchCommand Command(string sql, params object?[] args)
    {
        var command = new NpgsqlBatchCommand(sql);
        foreach (var arg in args)
        {
            command.Parameters.Add(arg switch
            {
                null => TypedNull(NpgsqlDbType.Text),
                NpgsqlParameter p => p,
                DateTimeOffset d => new NpgsqlParameter { Value = d.UtcDateTime, NpgsqlDbType = NpgsqlDbType.TimestampTz },
                _ => new NpgsqlParameter { Value = arg },
            });
        }
        return command;
    }
}
