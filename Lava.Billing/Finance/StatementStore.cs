using System.Data;
using Dapper;
using Lava.Billing.Infrastructure.Database;

namespace Lava.Billing.Finance;

/// <summary>A customer's statement: their accounts' opening and closing balances and every entry in between.</summary>
public sealed class StatementStore(ReadDataSource db)
{
    public sealed record AccountSummary(string AccountId, string Kind, string Type, string Currency,
        decimal OpeningBalance, decimal Debits, decimal Credits);

    public sealed record Movement(long? Seq, long EntryId, DateTime CreatedAt, DateTime EffectiveAt, string TransactionId,
        string TransactionKind, string Reference, string? MeterId, string AccountId, decimal Amount);

    // Deleted customers keep their statement: their ledger history does not go away.
    private const string SelectCustomerExists = """
        SELECT EXISTS (SELECT 1 FROM customers WHERE merchant_id = @MerchantId AND customer_id = @CustomerId)
        """;

    public async Task<bool> CustomerExistsAsync(string merchantId, string customerId, CancellationToken ct)
    {
        await using var connection = await db.Source.OpenConnectionAsync(ct);
        return await connection.ExecuteScalarAsync<bool>(new CommandDefinition(SelectCustomerExists,
            new { MerchantId = merchantId, CustomerId = customerId }, cancellationToken: ct));
    }

    // The period is (from, to]: opening is the balance as of from, closing the balance as of to.
    private const string SelectAccounts = """
        SELECT a.account_id, a.kind, a.type, a.currency::text AS currency,
               coalesce(sum(e.amount) FILTER (WHERE @From::timestamptz IS NOT NULL AND e.created_at <= @From), 0) AS opening_balance,
               coalesce(sum(e.amount) FILTER (WHERE e.amount > 0 AND (@From::timestamptz IS NULL OR e.created_at > @From)), 0) AS debits,
               coalesce(-sum(e.amount) FILTER (WHERE e.amount < 0 AND (@From::timestamptz IS NULL OR e.created_at > @From)), 0) AS credits
          FROM accounts a
          LEFT JOIN entries e ON e.merchant_id = a.merchant_id AND e.account_id = a.account_id
                             AND (@To::timestamptz IS NULL OR e.created_at <= @To)
         WHERE a.merchant_id = @MerchantId AND a.customer_id = @CustomerId
         GROUP BY a.account_id, a.kind, a.type, a.currency
         ORDER BY a.account_id
        """;

    // Entries read from the same snapshot as the sums; one committed after the last sequencer run has no seq yet and
    // comes last, in entry_id order.
    private const string SelectMovements = """
        SELECT s.seq, e.entry_id, e.created_at, t.effective_at, e.transaction_id, t.kind AS transaction_kind, t.reference,
               t.meter_id, e.account_id, e.amount
          FROM accounts a
          JOIN entries e             ON e.merchant_id = a.merchant_id AND e.account_id = a.account_id
          JOIN ledger_transactions t ON t.merchant_id = e.merchant_id AND t.transaction_id = e.transaction_id
          LEFT JOIN ledger_sequence r ON r.merchant_id = e.merchant_id AND r.transaction_id = e.transaction_id
                                     AND e.entry_id = ANY (r.entry_ids)
         CROSS JOIN LATERAL (SELECT r.first_seq + array_position(r.entry_ids, e.entry_id) - 1 AS seq) s
         WHERE a.merchant_id = @MerchantId AND a.customer_id = @CustomerId
           AND (@From::timestamptz IS NULL OR e.created_at > @From)
           AND (@To::timestamptz IS NULL OR e.created_at <= @To)
         ORDER BY s.seq NULLS LAST, e.entry_id
        """;

    /// <summary>
    /// Reads the statement in one REPEATABLE READ snapshot and hands it to <paramref name="write"/> while the snapshot is
    /// open: the summaries buffered (a few accounts), the movements one row at a time.
    /// </summary>
    public async Task ReadAsync(string merchantId, string customerId, DateTimeOffset? from, DateTimeOffset? to,
        Func<IReadOnlyList<AccountSummary>, IAsyncEnumerable<Movement>, Task> write, CancellationToken ct)
    {
        // Held while the client reads: the export pool's connection, so a slow reader never holds one that posts.
        await using var connection = await db.Exports.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, ct);
        await connection.ExecuteAsync(new CommandDefinition("SET TRANSACTION READ ONLY", transaction: tx, cancellationToken: ct));
        var args = new { MerchantId = merchantId, CustomerId = customerId, From = from?.UtcDateTime, To = to?.UtcDateTime };
        var accounts = (await connection.QueryAsync<AccountSummary>(new CommandDefinition(SelectAccounts, args, tx, cancellationToken: ct))).AsList();
        await write(accounts, connection.QueryUnbufferedAsync<Movement>(SelectMovements, args, tx));
        await tx.CommitAsync(ct);
    }
}
