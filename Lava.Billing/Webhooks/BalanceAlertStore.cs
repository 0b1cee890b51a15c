using Dapper;
using Npgsql;

namespace Lava.Billing.Webhooks;

public sealed record BalanceAlertRow(string CustomerId, decimal? LowBalanceThreshold, bool BelowThreshold, bool CreditsExhausted);

/// <summary>A customer's low-balance threshold and what its balance events last announced (migration 0131's triggers).</summary>
public sealed class BalanceAlertStore(NpgsqlDataSource db)
{
    // A customer without a row has no threshold and has not had credits yet.
    private const string Select = """
        SELECT c.customer_id, a.low_balance_threshold, coalesce(a.below_threshold, false) AS below_threshold,
               coalesce(a.credits_exhausted, true) AS credits_exhausted
          FROM customers c
          LEFT JOIN customer_balance_alerts a ON a.merchant_id = c.merchant_id AND a.customer_id = c.customer_id
         WHERE c.merchant_id = @MerchantId AND c.customer_id = @CustomerId AND c.deleted_at IS NULL
        """;

    public async Task<BalanceAlertRow?> FindAsync(string merchantId, string customerId, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        return await c.QuerySingleOrDefaultAsync<BalanceAlertRow>(new CommandDefinition(Select,
            new { MerchantId = merchantId, CustomerId = customerId }, cancellationToken: ct));
    }

    private const string Upsert = """
        INSERT INTO customer_balance_alerts AS a (merchant_id, customer_id, low_balance_threshold, below_threshold, credits_exhausted)
        VALUES (@MerchantId, @CustomerId, @Threshold, @Below, NOT @HasCredits)
        ON CONFLICT (merchant_id, customer_id)
        DO UPDATE SET low_balance_threshold = excluded.low_balance_threshold, below_threshold = excluded.below_threshold, updated_at = now()
        RETURNING customer_id, low_balance_threshold, below_threshold, credits_exhausted
        """;

    /// <summary>
    /// Sets (or with null clears) the threshold. <paramref name="below"/> says whether the balance is under it now, so
    /// only a later crossing is announced, not the state the merchant just chose.
    /// </summary>
    public async Task<BalanceAlertRow> SetAsync(string merchantId, string customerId, decimal? threshold, bool below, bool hasCredits,
        CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        return await c.QuerySingleAsync<BalanceAlertRow>(new CommandDefinition(Upsert, new
        {
            MerchantId = merchantId, CustomerId = customerId, Threshold = threshold, Below = below, HasCredits = hasCredits,
        }, cancellationToken: ct));
    }
}
