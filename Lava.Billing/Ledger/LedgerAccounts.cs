using Dapper;
using Npgsql;

namespace Lava.Billing.Ledger;

/// <summary>
/// The chart of accounts (docs/ledger.md). Account ids are derived from what they belong to, so a posting never has to
/// look an account up: <c>usage_revenue</c>, <c>cus_…:receivable</c>.
/// </summary>
public static class LedgerAccounts
{
    public const string UsageRevenue = "usage_revenue";
    public const string BreakageRevenue = "breakage_revenue";
    public const string PaymentsClearing = "payments_clearing";
    public const string ProviderCost = "provider_cost";
    public const string ProviderPayable = "provider_payable";
    public const string PlanRevenue = "plan_revenue";
    public const string BonusCreditExpense = "bonus_credit_expense";

    public static string CreditsCycle(string customerId) => customerId + ":credits_cycle";
    public static string CreditsBundle(string customerId) => customerId + ":credits_bundle";
    public static string Receivable(string customerId) => customerId + ":receivable";
    public static string SpendKey(string spendKeyId) => spendKeyId + ":spend_key";

    private const string InsertMerchantAccounts = """
        INSERT INTO accounts (merchant_id, account_id, kind, type, currency, cached)
        SELECT @MerchantId, a.kind, a.kind, a.type, m.currency, false
          FROM merchants m,
               (VALUES ('usage_revenue', 'revenue'), ('breakage_revenue', 'revenue'), ('payments_clearing', 'asset'),
                       ('provider_cost', 'expense'), ('provider_payable', 'liability'), ('plan_revenue', 'revenue'),
                       ('bonus_credit_expense', 'expense')) AS a(kind, type)
         WHERE m.merchant_id = @MerchantId
        """;

    public static Task CreateMerchantAccountsAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string merchantId, CancellationToken ct) =>
        connection.ExecuteAsync(new CommandDefinition(InsertMerchantAccounts, new { MerchantId = merchantId }, tx, cancellationToken: ct));

    private const string InsertCustomerAccounts = """
        WITH created AS (
            INSERT INTO accounts (merchant_id, account_id, kind, type, customer_id, currency, cached)
            SELECT @MerchantId, @CustomerId || ':' || a.kind, a.kind, a.type, @CustomerId, m.currency, true
              FROM merchants m,
                   (VALUES ('credits_cycle', 'liability'), ('credits_bundle', 'liability'), ('receivable', 'asset')) AS a(kind, type)
             WHERE m.merchant_id = @MerchantId
            RETURNING merchant_id, account_id
        )
        INSERT INTO account_balances (merchant_id, account_id)
        SELECT merchant_id, account_id FROM created
        """;

    /// <summary>A customer's credit (cycle, bundle) and receivable accounts, each with its cached balance row.</summary>
    public static Task CreateCustomerAccountsAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string merchantId, string customerId, CancellationToken ct) =>
        connection.ExecuteAsync(new CommandDefinition(InsertCustomerAccounts, new { MerchantId = merchantId, CustomerId = customerId }, tx, cancellationToken: ct));

    private const string InsertSpendKeyAccount = """
        WITH created AS (
            INSERT INTO accounts (merchant_id, account_id, kind, type, currency, cached)
            SELECT @MerchantId, @SpendKeyId || ':spend_key', 'spend_key', 'expense', m.currency, true
              FROM merchants m
             WHERE m.merchant_id = @MerchantId
            RETURNING merchant_id, account_id
        )
        INSERT INTO account_balances (merchant_id, account_id)
        SELECT merchant_id, account_id FROM created
        """;

    /// <summary>A spend key's own expense account, with a cached balance (its all-time spend, docs/spend-keys.md).</summary>
    public static Task CreateSpendKeyAccountAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string merchantId, string spendKeyId, CancellationToken ct) =>
        connection.ExecuteAsync(new CommandDefinition(InsertSpendKeyAccount, new { MerchantId = merchantId, SpendKeyId = spendKeyId }, tx, cancellationToken: ct));
}
