using Dapper;
using Npgsql;

namespace Lava.Billing.Ledger;

/// <summary>
/// Posts one ledger transaction outside the report hot path (grants, expiries, purchases). Idempotent on
/// (kind, reference): a second post of the same business event writes nothing and answers false.
/// </summary>
public static class LedgerWriter
{
    public sealed record Transaction(
        string TransactionId, string Kind, string Reference, string? CustomerId, DateTimeOffset EffectiveAt,
        IReadOnlyList<Posting> Postings, string LineageJson = "{}");

    private const string Insert = """
        WITH txn AS (
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, customer_id, lineage, effective_at)
            VALUES (@MerchantId, @TransactionId, @Kind, @Reference, @CustomerId, @LineageJson::jsonb, @EffectiveAt)
            ON CONFLICT (merchant_id, kind, reference) DO NOTHING
            RETURNING merchant_id, transaction_id
        ), ent AS (
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount)
            SELECT txn.merchant_id, txn.transaction_id, e.account_id, a.currency, e.amount
              FROM txn
             CROSS JOIN unnest(@Accounts, @Amounts) AS e(account_id, amount)
              JOIN accounts a ON a.merchant_id = txn.merchant_id AND a.account_id = e.account_id
        )
        SELECT count(*)::int FROM txn
        """;

    public static async Task<bool> PostAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string merchantId, Transaction t, CancellationToken ct)
    {
        var postings = t.Postings.Where(p => p.Amount != 0).ToList();
        var inserted = await connection.ExecuteScalarAsync<int>(new CommandDefinition(Insert, new
        {
            MerchantId = merchantId, t.TransactionId, t.Kind, t.Reference, t.CustomerId, t.LineageJson,
            EffectiveAt = t.EffectiveAt.UtcDateTime,
            Accounts = postings.Select(p => p.AccountId).ToArray(),
            Amounts = postings.Select(p => p.Amount).ToArray(),
        }, tx, cancellationToken: ct));
        return inserted == 1;
    }
}

/// <summary>A customer's cached balances, raw (debit positive). Credits are liabilities: remaining = −raw.</summary>
public sealed record CustomerBalances(decimal Cycle, decimal Bundle, decimal Receivable)
{
    public decimal CycleRemaining => Math.Max(-Cycle, 0);
    public decimal BundleRemaining => Math.Max(-Bundle, 0);
    public decimal CreditsRemaining => CycleRemaining + BundleRemaining;

    private const string Lock = """
        SELECT account_id, balance FROM account_balances
         WHERE merchant_id = @MerchantId AND account_id = ANY(@Accounts)
         ORDER BY account_id
           FOR UPDATE
        """;

    private const string Read = """
        SELECT account_id, balance FROM account_balances
         WHERE merchant_id = @MerchantId AND account_id = ANY(@Accounts)
        """;

    /// <summary>Locks the customer's balance rows in account_id order, the order every writer uses.</summary>
    public static Task<CustomerBalances?> LockAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string merchantId, string customerId, CancellationToken ct) =>
        LoadAsync(connection, tx, Lock, merchantId, customerId, ct);

    public static Task<CustomerBalances?> ReadAsync(NpgsqlConnection connection, string merchantId, string customerId, CancellationToken ct) =>
        LoadAsync(connection, null, Read, merchantId, customerId, ct);

    private static async Task<CustomerBalances?> LoadAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, string sql,
        string merchantId, string customerId, CancellationToken ct)
    {
        var cycle = LedgerAccounts.CreditsCycle(customerId);
        var bundle = LedgerAccounts.CreditsBundle(customerId);
        var receivable = LedgerAccounts.Receivable(customerId);
        var rows = (await connection.QueryAsync<(string AccountId, decimal Balance)>(new CommandDefinition(sql,
            new { MerchantId = merchantId, Accounts = new[] { bundle, cycle, receivable } }, tx, cancellationToken: ct)))
            .ToDictionary(r => r.AccountId, r => r.Balance);
        return rows.Count == 3 ? new CustomerBalances(rows[cycle], rows[bundle], rows[receivable]) : null;
    }
}
