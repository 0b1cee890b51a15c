using Dapper;
using Npgsql;

namespace Lava.Billing.Ledger;

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
