using Npgsql;
using NpgsqlTypes;

namespace Lava.Billing.Requests;

/// <summary>
/// The report hot path in two round trips: <see cref="BeginAsync"/> (BEGIN, replay check, lock the usage total and the
/// customer's balances) and <see cref="PostAsync"/> (one statement writes request, ledger transaction, entries and
/// usage total, then COMMIT). Raw Npgsql batches rather than Dapper because Dapper cannot send several statements
/// as one batch; the SQL still sits next to the one method that runs it.
/// </summary>
public sealed class RequestStore(NpgsqlDataSource db)
{
    public sealed record Stored(byte[] Fingerprint, int StatusCode, string Response);

    /// <summary>What a report needs to know before it can be priced, read under lock.</summary>
    public sealed record Position(decimal UsedBefore, decimal CycleBalance, decimal BundleBalance, decimal ReceivableBalance);

    /// <summary>Exactly one of: a stored report (replay), a missing customer, a position to price from, or none (lost a race).</summary>
    public sealed record Begin(Stored? Existing, bool CustomerMissing, Position? Position);

    private const string SelectExisting = """
        SELECT fingerprint, status_code, response FROM requests WHERE merchant_id = $1 AND request_id = $2
        """;

    private const string SelectCustomerLive = """
        SELECT EXISTS (SELECT 1 FROM customers WHERE merchant_id = $1 AND customer_id = $3 AND deleted_at IS NULL)
        """;

    // Locks (and creates) the usage total unless this is a replay or the customer is unknown; returns usage so far.
    private const string LockUsageTotal = """
        INSERT INTO usage_totals (merchant_id, meter_id, customer_id, period_start, quantity)
        SELECT $1, $4, coalesce($3, ''), $5, 0
         WHERE NOT EXISTS (SELECT 1 FROM requests WHERE merchant_id = $1 AND request_id = $2)
           AND ($3 IS NULL OR EXISTS (SELECT 1 FROM customers WHERE merchant_id = $1 AND customer_id = $3 AND deleted_at IS NULL))
        ON CONFLICT (merchant_id, meter_id, customer_id, period_start) DO UPDATE SET quantity = usage_totals.quantity
        RETURNING quantity
        """;

    // The customer's cached balances, always locked in account_id order so concurrent reports cannot deadlock.
    private const string LockBalances = """
        SELECT account_id, balance FROM account_balances
         WHERE merchant_id = $1 AND account_id = ANY($6)
           AND NOT EXISTS (SELECT 1 FROM requests WHERE merchant_id = $1 AND request_id = $2)
         ORDER BY account_id
           FOR UPDATE
        """;

    public async Task<(NpgsqlConnection Connection, Begin State)> BeginAsync(
        string merchantId, string requestId, string? customerId, string meterId, DateTimeOffset periodStart, CancellationToken ct)
    {
        var connection = await db.OpenConnectionAsync(ct);
        try
        {
            var accounts = customerId is null
                ? Array.Empty<string>()
                : [Ledger.LedgerAccounts.CreditsBundle(customerId), Ledger.LedgerAccounts.CreditsCycle(customerId), Ledger.LedgerAccounts.Receivable(customerId)];
            await using var batch = new NpgsqlBatch(connection);
            batch.BatchCommands.Add(new NpgsqlBatchCommand("BEGIN"));
            batch.BatchCommands.Add(Command(SelectExisting, merchantId, requestId));
            batch.BatchCommands.Add(Command(SelectCustomerLive, merchantId, requestId, customerId));
            batch.BatchCommands.Add(Command(LockUsageTotal, merchantId, requestId, customerId, meterId, periodStart));
            batch.BatchCommands.Add(Command(LockBalances, merchantId, requestId, customerId, meterId, periodStart, accounts));
            await using var reader = await batch.ExecuteReaderAsync(ct);

            // BEGIN returns no rows, so the reader starts at the replay check.
            Stored? existing = null;
            if (await reader.ReadAsync(ct)) existing = new Stored(reader.GetFieldValue<byte[]>(0), reader.GetInt16(1), reader.GetString(2));
            await reader.NextResultAsync(ct);
            await reader.ReadAsync(ct);
            var customerLive = reader.GetBoolean(0);
            await reader.NextResultAsync(ct);
            decimal? usedBefore = await reader.ReadAsync(ct) ? reader.GetDecimal(0) : null;
            await reader.NextResultAsync(ct);
            var balances = new Dictionary<string, decimal>(3);
            while (await reader.ReadAsync(ct)) balances[reader.GetString(0)] = reader.GetDecimal(1);
            await reader.DisposeAsync();

            if (existing is not null) return (connection, new Begin(existing, false, null));
            if (customerId is not null && !customerLive) return (connection, new Begin(null, true, null));
            // The later statements see a newer snapshot: if a concurrent duplicate committed in between, they found
            // the request and locked nothing. The caller answers that as a replay.
            if (usedBefore is null || balances.Count != accounts.Length) return (connection, new Begin(null, false, null));
            var position = new Position(
                usedBefore.Value,
                customerId is null ? 0 : balances[accounts[1]],
                customerId is null ? 0 : balances[accounts[0]],
                customerId is null ? 0 : balances[accounts[2]]);
            return (connection, new Begin(null, false, position));
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
        string TransactionId, int StatusCode, string Response, string LineageJson,
        DateTimeOffset PeriodStart, decimal Quantity, string[] EntryAccounts, decimal[] EntryAmounts);

    // One statement: if the request id was taken meanwhile (a concurrent duplicate committed first), nothing is written.
    private const string InsertAll = """
        WITH req AS (
            INSERT INTO requests (merchant_id, request_id, fingerprint, mode, customer_id, meter_id, price_version,
                                  input_tokens, output_tokens, input_characters, output_characters, input_seconds, output_seconds,
                                  cost, charge_amount, metadata, occurred_at, created_at, transaction_id, status_code, response)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::jsonb, $17, $18, $19, $20, $21)
            ON CONFLICT (merchant_id, request_id) DO NOTHING
            RETURNING merchant_id
        ), txn AS (
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, customer_id, meter_id, price_version,
                                             lineage, effective_at, created_at)
            SELECT $1, $19, 'usage', $2, $5, $6, $7, $22::jsonb, $17, $18 FROM req
            RETURNING merchant_id, transaction_id
        ), ent AS (
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount)
            SELECT txn.merchant_id, txn.transaction_id, e.account_id, a.currency, e.amount
              FROM txn
             CROSS JOIN unnest($25::text[], $26::numeric[]) AS e(account_id, amount)
              JOIN accounts a ON a.merchant_id = txn.merchant_id AND a.account_id = e.account_id
        ), used AS (
            UPDATE usage_totals SET quantity = quantity + $24
             WHERE merchant_id = $1 AND meter_id = $6 AND customer_id = coalesce($5, '') AND period_start = $23
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
            r.Cost is { } cost ? cost : TypedNull(NpgsqlDbType.Numeric), r.ChargeAmount, r.MetadataJson, r.OccurredAt, r.CreatedAt, r.TransactionId, (short)r.StatusCode, r.Response,
            r.LineageJson, r.PeriodStart, r.Quantity, r.EntryAccounts, r.EntryAmounts));
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
