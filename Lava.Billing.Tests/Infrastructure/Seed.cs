using Dapper;
using Lava.Billing.Infrastructure;
using Lava.Billing.Ledger;
using Npgsql;

namespace Lava.Billing.Tests.Infrastructure;

/// <summary>Arranges meters, customers and credit grants directly, so ledger tests do not depend on other APIs.</summary>
public static class Seed
{
    public static async Task<string> MeterAsync(this LavaApp app, string merchantId, string slug, string rateType, string tierType,
        params (decimal Start, decimal Rate)[] tiers)
    {
        var meterId = Ids.New("mtr");
        await using var c = new NpgsqlConnection(app.ConnectionString);
        await c.ExecuteAsync("""
            INSERT INTO meters (merchant_id, meter_id, meter_slug, name, rate_type, tier_type) VALUES (@m, @id, @slug, @slug, @rt, @tt);
            INSERT INTO meter_prices (merchant_id, meter_id, version, tier_starts, tier_rates) VALUES (@m, @id, 1, @starts, @rates);
            """, new { m = merchantId, id = meterId, slug, rt = rateType, tt = tierType,
            starts = tiers.Select(t => t.Start).ToArray(), rates = tiers.Select(t => t.Rate).ToArray() });
        return meterId;
    }

    /// <summary>
    /// Customers @prefix1 … @prefix@n of merchant @m with their three balance accounts and balance rows, in one statement
    /// (for ledgers of many customers, where <see cref="CustomerAsync"/> one at a time would be slow).
    /// </summary>
    public const string CustomersWithBalancesSql = """
        INSERT INTO customers (merchant_id, customer_id) SELECT @m, @prefix || i FROM generate_series(1, @n) AS i;
        WITH created AS (
            INSERT INTO accounts (merchant_id, account_id, kind, type, customer_id, currency, cached)
            SELECT c.merchant_id, c.customer_id || ':' || a.kind, a.kind, a.type, c.customer_id, 'USD', true
              FROM customers c
             CROSS JOIN (VALUES ('credits_cycle', 'liability'), ('credits_bundle', 'liability'), ('receivable', 'asset')) AS a(kind, type)
             WHERE c.merchant_id = @m
            RETURNING merchant_id, account_id)
        INSERT INTO account_balances (merchant_id, account_id) SELECT merchant_id, account_id FROM created;
        """;

    /// <summary>A new merchant with a customer and a "gpt" meter charging 1 per report: what a usage report needs.</summary>
    public static async Task<(LavaApp.Merchant M, string Customer)> ReportingMerchantAsync(this LavaApp app)
    {
        var m = await app.NewMerchantAsync();
        var customer = await app.CustomerAsync(m.MerchantId);
        await app.MeterAsync(m.MerchantId, "gpt", "fixed", "requests", (0, 1));
        return (m, customer);
    }

    public static async Task<string> CustomerAsync(this LavaApp app, string merchantId)
    {
        var customerId = Ids.New("cus");
        await using var c = new NpgsqlConnection(app.ConnectionString);
        await c.OpenAsync();
        await using var tx = await c.BeginTransactionAsync();
        await c.ExecuteAsync("INSERT INTO customers (merchant_id, customer_id) VALUES (@m, @id)", new { m = merchantId, id = customerId }, tx);
        await LedgerAccounts.CreateCustomerAccountsAsync(c, tx, merchantId, customerId, CancellationToken.None);
        await tx.CommitAsync();
        return customerId;
    }

    /// <summary>Posts a credit grant (Dr payments clearing, Cr the customer's credits) as the plans feature will.</summary>
    public static async Task GrantAsync(this LavaApp app, string merchantId, string customerId, decimal amount, string bucket = "cycle")
    {
        var credits = bucket == "cycle" ? LedgerAccounts.CreditsCycle(customerId) : LedgerAccounts.CreditsBundle(customerId);
        await using var c = new NpgsqlConnection(app.ConnectionString);
        await c.ExecuteAsync("""
            BEGIN;
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, customer_id, effective_at)
            VALUES (@m, @t, 'test_grant', @t, @c, now());
            INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount) VALUES
                (@m, @t, 'payments_clearing', 'USD', @amount), (@m, @t, @credits, 'USD', -@amount);
            COMMIT;
            """, new { m = merchantId, t = Ids.New("txn"), c = customerId, credits, amount });
    }

    public sealed record SeededPlan(string PlanId, IReadOnlyList<string> BundleIds);

    /// <summary>A plan with linked meters and credit bundles (cost, credit), as the plans API stores it.</summary>
    public static async Task<SeededPlan> PlanAsync(this LavaApp app, string merchantId, decimal periodAmount, decimal includedCredit,
        string interval = "month", string rollover = "none", string bundleRollover = "none", string[]? meterIds = null,
        params (decimal Cost, decimal Credit)[] bundles)
    {
        var planId = Ids.New("pln");
        var bundleIds = bundles.Select(_ => Ids.New("bnd")).ToList();
        await using var c = new NpgsqlConnection(app.ConnectionString);
        await c.ExecuteAsync("""
            INSERT INTO plans (merchant_id, plan_id, name, period_amount, included_credit, billing_interval, rollover_type, bundle_rollover_type)
            VALUES (@m, @p, 'Plan', @period, @included, @interval, @rollover, @bundleRollover)
            """, new { m = merchantId, p = planId, period = periodAmount, included = includedCredit, interval, rollover, bundleRollover });
        foreach (var meterId in meterIds ?? [])
            await c.ExecuteAsync("INSERT INTO plan_meters (merchant_id, plan_id, meter_id) VALUES (@m, @p, @meterId)", new { m = merchantId, p = planId, meterId });
        for (var i = 0; i < bundles.Length; i++)
        {
            await c.ExecuteAsync("""
                INSERT INTO credit_bundles (merchant_id, credit_bundle_id, plan_id, name, cost, credit_amount, position)
                VALUES (@m, @b, @p, 'Pack', @cost, @credit, @i)
                """, new { m = merchantId, b = bundleIds[i], p = planId, cost = bundles[i].Cost, credit = bundles[i].Credit, i });
        }
        return new SeededPlan(planId, bundleIds);
    }

    public static Task<decimal> BalanceAsync(this LavaApp app, string merchantId, string accountId) =>
        app.QueryAsync<decimal>("SELECT balance FROM account_balances WHERE merchant_id = @m AND account_id = @a", new { m = merchantId, a = accountId });

    public static Task<decimal> EntriesSumAsync(this LavaApp app, string merchantId, string accountId) =>
        app.QueryAsync<decimal>("SELECT coalesce(sum(amount), 0) FROM entries WHERE merchant_id = @m AND account_id = @a", new { m = merchantId, a = accountId });
}
