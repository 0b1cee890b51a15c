using Dapper;
using Lava.Billing.Infrastructure;
using Npgsql;

namespace Lava.Billing.Plans;

/// <summary>
/// Plans with their linked meters and credit bundles. Reads here; writes in PlanStore.Writes.cs. A deleted plan or
/// bundle is kept (subscriptions and purchases refer to it) but is never returned as live.
/// </summary>
public sealed partial class PlanStore(NpgsqlDataSource db)
{
    private sealed record PlanRow(string PlanId, string MerchantId, string Name, decimal PeriodAmount, decimal IncludedCredit,
        string BillingInterval, string RolloverType, string BundleRolloverType, string? DefaultAutoTopUpBundleId, DateTime CreatedAt);

    private sealed record MeterLink(string PlanId, string MeterId, string Name);

    private sealed record BundleRow(string CreditBundleId, string PlanId, string Name, decimal Cost, decimal CreditAmount, DateTime CreatedAt);

    // Meters deleted since they were linked drop out of the plan rather than showing as links to nothing.
    private const string SelectPlans = """
        SELECT plan_id, merchant_id, name, period_amount, included_credit, billing_interval, rollover_type,
               bundle_rollover_type, default_auto_top_up_bundle_id, created_at
          FROM plans
         WHERE merchant_id = @MerchantId AND plan_id = ANY(@PlanIds) AND deleted_at IS NULL
         ORDER BY plan_id;
        SELECT pm.plan_id, m.meter_id, m.name
          FROM plan_meters pm
          JOIN meters m ON m.merchant_id = pm.merchant_id AND m.meter_id = pm.meter_id
         WHERE pm.merchant_id = @MerchantId AND pm.plan_id = ANY(@PlanIds) AND m.deleted_at IS NULL
         ORDER BY m.meter_id;
        SELECT credit_bundle_id, plan_id, name, cost, credit_amount, created_at
          FROM credit_bundles
         WHERE merchant_id = @MerchantId AND plan_id = ANY(@PlanIds) AND deleted_at IS NULL
         ORDER BY position, credit_bundle_id;
        """;

    /// <summary>The live plans among <paramref name="planIds"/>, in id order, as the API shows them.</summary>
    private static async Task<List<RestPlan>> LoadAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, string merchantId,
        string[] planIds, CancellationToken ct)
    {
        await using var results = await connection.QueryMultipleAsync(new CommandDefinition(SelectPlans,
            new { MerchantId = merchantId, PlanIds = planIds }, tx, cancellationToken: ct));
        var plans = (await results.ReadAsync<PlanRow>()).AsList();
        var meters = (await results.ReadAsync<MeterLink>()).ToLookup(m => m.PlanId);
        var bundles = (await results.ReadAsync<BundleRow>()).ToLookup(b => b.PlanId);
        return plans.Select(p => new RestPlan(
            p.PlanId, p.MerchantId, p.Name, Money.Format(p.PeriodAmount), Money.Format(p.IncludedCredit), p.BillingInterval,
            p.RolloverType, p.BundleRolloverType, p.DefaultAutoTopUpBundleId,
            meters[p.PlanId].Select(m => new RestPlanLinkedMeter(m.MeterId, m.Name)).ToList(),
            bundles[p.PlanId].Select(b => new RestPlanCreditBundle(b.CreditBundleId, b.Name, Money.Format(b.Cost), Money.Format(b.CreditAmount))).ToList(),
            p.CreatedAt)).ToList();
    }

    public async Task<RestPlan?> FindAsync(string merchantId, string planId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return (await LoadAsync(connection, null, merchantId, [planId], ct)).SingleOrDefault();
    }

    private const string SelectPlanPage = """
        SELECT plan_id
          FROM plans
         WHERE merchant_id = @MerchantId
           AND deleted_at IS NULL
           AND plan_id > @After
         ORDER BY plan_id
         LIMIT @Take
        """;

    public async Task<List<RestPlan>> ListAsync(string merchantId, string? after, int take, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var ids = await connection.QueryAsync<string>(new CommandDefinition(SelectPlanPage,
            new { MerchantId = merchantId, After = after ?? "", Take = take }, cancellationToken: ct));
        return await LoadAsync(connection, null, merchantId, ids.ToArray(), ct);
    }

    private const string SelectTerms = """
        SELECT plan_id, name, period_amount, included_credit, billing_interval, rollover_type, bundle_rollover_type,
               default_auto_top_up_bundle_id
          FROM plans
         WHERE merchant_id = @MerchantId AND plan_id = @PlanId AND deleted_at IS NULL;
        SELECT pm.meter_id
          FROM plan_meters pm
          JOIN meters m ON m.merchant_id = pm.merchant_id AND m.meter_id = pm.meter_id
         WHERE pm.merchant_id = @MerchantId AND pm.plan_id = @PlanId AND m.deleted_at IS NULL
         ORDER BY pm.meter_id;
        """;

    // The same read, sharing the plan row: a plan update or delete (which locks the row) waits, so terms read here
    // stay the plan's terms until the reader commits.
    private const string ShareTerms = """
        SELECT plan_id, name, period_amount, included_credit, billing_interval, rollover_type, bundle_rollover_type,
               default_auto_top_up_bundle_id
          FROM plans
         WHERE merchant_id = @MerchantId AND plan_id = @PlanId AND deleted_at IS NULL
           FOR SHARE;
        SELECT pm.meter_id
          FROM plan_meters pm
          JOIN meters m ON m.merchant_id = pm.merchant_id AND m.meter_id = pm.meter_id
         WHERE pm.merchant_id = @MerchantId AND pm.plan_id = @PlanId AND m.deleted_at IS NULL
         ORDER BY pm.meter_id;
        """;

    /// <summary>A live plan's terms, for subscriptions; null when unknown, deleted or another merchant's.</summary>
    public async Task<PlanTerms?> FindLiveAsync(string merchantId, string planId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await ReadTermsAsync(connection, null, SelectTerms, merchantId, planId, ct);
    }

    /// <summary>A live plan's terms, read under a share lock in the caller's transaction.</summary>
    public static Task<PlanTerms?> ShareLiveAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string merchantId, string planId, CancellationToken ct) =>
        ReadTermsAsync(connection, tx, ShareTerms, merchantId, planId, ct);

    private static async Task<PlanTerms?> ReadTermsAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, string sql,
        string merchantId, string planId, CancellationToken ct)
    {
        await using var results = await connection.QueryMultipleAsync(new CommandDefinition(sql,
            new { MerchantId = merchantId, PlanId = planId }, tx, cancellationToken: ct));
        var plan = await results.ReadSingleOrDefaultAsync<(string PlanId, string Name, decimal PeriodAmount, decimal IncludedCredit,
            string BillingInterval, string RolloverType, string BundleRolloverType, string? DefaultAutoTopUpBundleId)?>();
        var meterIds = (await results.ReadAsync<string>()).AsList();
        return plan is { } p
            ? new PlanTerms(p.PlanId, p.Name, p.PeriodAmount, p.IncludedCredit, p.BillingInterval, p.RolloverType,
                p.BundleRolloverType, p.DefaultAutoTopUpBundleId, meterIds)
            : null;
    }

    // Deleting a plan deletes its bundles too, so a live bundle always belongs to a live plan.
    private const string SelectBundle = """
        SELECT credit_bundle_id, plan_id, name, cost, credit_amount, created_at
          FROM credit_bundles
         WHERE merchant_id = @MerchantId AND credit_bundle_id = @CreditBundleId AND deleted_at IS NULL
        """;

    private async Task<BundleRow?> FindBundleRowAsync(string merchantId, string creditBundleId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.QuerySingleOrDefaultAsync<BundleRow>(new CommandDefinition(SelectBundle,
            new { MerchantId = merchantId, CreditBundleId = creditBundleId }, cancellationToken: ct));
    }

    /// <summary>A live bundle's terms, for purchases and auto top-ups; null when unknown, deleted or another merchant's.</summary>
    public async Task<BundleTerms?> FindLiveBundleAsync(string merchantId, string creditBundleId, CancellationToken ct) =>
        await FindBundleRowAsync(merchantId, creditBundleId, ct) is { } b
            ? new BundleTerms(b.CreditBundleId, b.PlanId, b.Name, b.Cost, b.CreditAmount)
            : null;

    public async Task<RestCreditBundle?> FindBundleAsync(string merchantId, string creditBundleId, CancellationToken ct) =>
        await FindBundleRowAsync(merchantId, creditBundleId, ct) is { } b ? ToRest(b) : null;

    private const string SelectBundlePage = """
        SELECT credit_bundle_id, plan_id, name, cost, credit_amount, created_at
          FROM credit_bundles
         WHERE merchant_id = @MerchantId
           AND deleted_at IS NULL
           AND (@PlanId::text IS NULL OR plan_id = @PlanId)
           AND credit_bundle_id > @After
         ORDER BY credit_bundle_id
         LIMIT @Take
        """;

    public async Task<List<RestCreditBundle>> ListBundlesAsync(string merchantId, string? planId, string? after, int take, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var rows = await connection.QueryAsync<BundleRow>(new CommandDefinition(SelectBundlePage,
            new { MerchantId = merchantId, PlanId = planId, After = after ?? "", Take = take }, cancellationToken: ct));
        return rows.Select(ToRest).ToList();
    }

    private static RestCreditBundle ToRest(BundleRow b) =>
        new(b.CreditBundleId, b.PlanId, b.Name, Money.Format(b.Cost), Money.Format(b.CreditAmount), b.CreatedAt);
}
