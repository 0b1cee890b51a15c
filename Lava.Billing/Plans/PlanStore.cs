using Dapper;
using Npgsql;

namespace Lava.Billing.Plans;

// Stand-in until the plans branch lands: the two lookups subscriptions need.
public sealed record PlanTerms(string PlanId, string Name, decimal PeriodAmount, decimal IncludedCredit, string BillingInterval,
    string RolloverType, string BundleRolloverType, string? DefaultAutoTopUpBundleId, IReadOnlyList<string> MeterIds);

public sealed record BundleTerms(string CreditBundleId, string PlanId, string Name, decimal Cost, decimal CreditAmount);

public sealed class PlanStore(NpgsqlDataSource db)
{
    public async Task<PlanTerms?> FindLiveAsync(string merchantId, string planId, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        var row = await c.QuerySingleOrDefaultAsync<(string PlanId, string Name, decimal PeriodAmount, decimal IncludedCredit, string BillingInterval,
            string RolloverType, string BundleRolloverType, string? DefaultAutoTopUpBundleId)?>(new CommandDefinition("""
            SELECT plan_id, name, period_amount, included_credit, billing_interval, rollover_type, bundle_rollover_type, default_auto_top_up_bundle_id
              FROM plans WHERE merchant_id = @MerchantId AND plan_id = @PlanId AND deleted_at IS NULL
            """, new { MerchantId = merchantId, PlanId = planId }, cancellationToken: ct));
        if (row is not { } r) return null;
        var meters = await c.QueryAsync<string>(new CommandDefinition(
            "SELECT meter_id FROM plan_meters WHERE merchant_id = @MerchantId AND plan_id = @PlanId",
            new { MerchantId = merchantId, PlanId = planId }, cancellationToken: ct));
        return new PlanTerms(r.PlanId, r.Name, r.PeriodAmount, r.IncludedCredit, r.BillingInterval, r.RolloverType, r.BundleRolloverType,
            r.DefaultAutoTopUpBundleId, meters.AsList());
    }

    public async Task<BundleTerms?> FindLiveBundleAsync(string merchantId, string creditBundleId, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        return await c.QuerySingleOrDefaultAsync<BundleTerms>(new CommandDefinition("""
            SELECT credit_bundle_id, plan_id, name, cost, credit_amount FROM credit_bundles
             WHERE merchant_id = @MerchantId AND credit_bundle_id = @Id AND deleted_at IS NULL
            """, new { MerchantId = merchantId, Id = creditBundleId }, cancellationToken: ct));
    }
}
