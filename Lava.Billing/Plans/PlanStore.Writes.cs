using Dapper;
using Lava.Billing.Infrastructure;
using Npgsql;

namespace Lava.Billing.Plans;

/// <summary>What became of a plan write.</summary>
public abstract record PlanWrite
{
    public sealed record Saved(RestPlan Plan) : PlanWrite;
    public sealed record Deleted : PlanWrite;
    public sealed record NotFound : PlanWrite;
    /// <summary>Well-formed input that does not fit this merchant's data (unknown meters, bundles, totals).</summary>
    public sealed record Invalid(IDictionary<string, string[]> Errors) : PlanWrite;
    public sealed record InUse : PlanWrite;
}

public sealed record NewPlan(string Name, decimal PeriodAmount, decimal IncludedCredit, string BillingInterval, string RolloverType,
    string BundleRolloverType, int? DefaultBundleIndex, IReadOnlyList<string> MeterIds, IReadOnlyList<CreditBundleParams> Bundles);

public sealed partial class PlanStore
{
    /// <summary>A plan with its meter links and bundles, all or nothing.</summary>
    public async Task<PlanWrite> CreateAsync(string merchantId, NewPlan plan, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var meterIds = plan.MeterIds.Distinct(StringComparer.Ordinal).ToArray();
        if (await UnknownMetersAsync(connection, tx, merchantId, meterIds, ct) is { Count: > 0 } unknown) return UnknownMeters(unknown);

        var planId = Ids.New("pln");
        var bundles = plan.Bundles.Select((b, i) => new BundleWrite(Ids.New("bnd"), b.Name!, b.Cost!.Value, b.CreditAmount!.Value, i)).ToList();
        var defaultId = plan.DefaultBundleIndex is { } index ? bundles[index].CreditBundleId : null;
        await connection.ExecuteAsync(new CommandDefinition(InsertPlan, new
        {
            MerchantId = merchantId, PlanId = planId, plan.Name, plan.PeriodAmount, plan.IncludedCredit, plan.BillingInterval,
            plan.RolloverType, plan.BundleRolloverType, DefaultBundleId = defaultId,
        }, tx, cancellationToken: ct));
        await LinkMetersAsync(connection, tx, merchantId, planId, meterIds, ct);
        await InsertBundlesAsync(connection, tx, merchantId, planId, bundles, ct);
        var saved = (await LoadAsync(connection, tx, merchantId, [planId], ct)).Single();
        await tx.CommitAsync(ct);
        return new PlanWrite.Saved(saved);
    }

    private const string InsertPlan = """
        INSERT INTO plans (merchant_id, plan_id, name, period_amount, included_credit, billing_interval, rollover_type,
                           bundle_rollover_type, default_auto_top_up_bundle_id)
        VALUES (@MerchantId, @PlanId, @Name, @PeriodAmount, @IncludedCredit, @BillingInterval, @RolloverType,
                @BundleRolloverType, @DefaultBundleId)
        """;

    public sealed record PlanChanges(string? Name, string? RolloverType, string? BundleRolloverType, decimal? IncludedCredit,
        Optional<string> DefaultBundleId, IReadOnlyList<string>? MeterIds, IReadOnlyList<CreditBundleChange>? Bundles);

    // The plan row is locked for the whole update: concurrent edits of one plan's bundles and default apply one after
    // the other, so the bundle limit and the default's validity hold whatever races.
    private const string LockPlan = """
        SELECT period_amount, default_auto_top_up_bundle_id
          FROM plans
         WHERE merchant_id = @MerchantId AND plan_id = @PlanId AND deleted_at IS NULL
           FOR UPDATE
        """;

    private const string SelectLiveBundles = """
        SELECT credit_bundle_id, position
          FROM credit_bundles
         WHERE merchant_id = @MerchantId AND plan_id = @PlanId AND deleted_at IS NULL
        """;

    private const string UpdatePlan = """
        UPDATE plans
           SET name                          = coalesce(@Name, name),
               rollover_type                 = coalesce(@RolloverType, rollover_type),
               bundle_rollover_type          = coalesce(@BundleRolloverType, bundle_rollover_type),
               included_credit               = coalesce(@IncludedCredit, included_credit),
               default_auto_top_up_bundle_id = @DefaultBundleId,
               updated_at                    = now()
         WHERE merchant_id = @MerchantId AND plan_id = @PlanId
        """;

    public async Task<PlanWrite> UpdateAsync(string merchantId, string planId, PlanChanges changes, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var args = new { MerchantId = merchantId, PlanId = planId };
        var current = await connection.QuerySingleOrDefaultAsync<(decimal PeriodAmount, string? DefaultBundleId)?>(
            new CommandDefinition(LockPlan, args, tx, cancellationToken: ct));
        if (current is not { } plan) return new PlanWrite.NotFound();
        if (changes.IncludedCredit > plan.PeriodAmount)
        {
            return new PlanWrite.Invalid(new Dictionary<string, string[]>
            {
                ["included_credit"] = [$"must not exceed the plan's period_amount ({Money.Format(plan.PeriodAmount)})"],
            });
        }
        var meterIds = changes.MeterIds?.Distinct(StringComparer.Ordinal).ToArray();
        if (meterIds is not null && await UnknownMetersAsync(connection, tx, merchantId, meterIds, ct) is { Count: > 0 } unknown)
            return UnknownMeters(unknown);

        var live = (await connection.QueryAsync<BundleEdits.LiveBundle>(new CommandDefinition(SelectLiveBundles, args, tx, cancellationToken: ct))).AsList();
        var edit = BundleEdits.Resolve(live, plan.DefaultBundleId, changes.Bundles, changes.DefaultBundleId, () => Ids.New("bnd"));
        if (edit.Errors.Count > 0) return new PlanWrite.Invalid(edit.Errors);

        await connection.ExecuteAsync(new CommandDefinition(UpdatePlan, new
        {
            MerchantId = merchantId, PlanId = planId, changes.Name, changes.RolloverType, changes.BundleRolloverType,
            changes.IncludedCredit, DefaultBundleId = edit.DefaultBundleId,
        }, tx, cancellationToken: ct));
        if (meterIds is not null)
        {
            await connection.ExecuteAsync(new CommandDefinition(UnlinkMeters, args, tx, cancellationToken: ct));
            await LinkMetersAsync(connection, tx, merchantId, planId, meterIds, ct);
        }
        await ChangeBundlesAsync(connection, tx, merchantId, planId, edit.Changes, ct);
        await DeleteBundlesAsync(connection, tx, merchantId, planId, edit.Deletes, ct);
        await InsertBundlesAsync(connection, tx, merchantId, planId, edit.Inserts, ct);
        var saved = (await LoadAsync(connection, tx, merchantId, [planId], ct)).Single();
        await tx.CommitAsync(ct);
        return new PlanWrite.Saved(saved);
    }

    private const string SelectActiveSubscription = """
        SELECT EXISTS (SELECT 1 FROM subscriptions WHERE merchant_id = @MerchantId AND plan_id = @PlanId AND status = 'active')
        """;

    private const string SoftDeletePlan = """
        UPDATE plans SET deleted_at = now(), updated_at = now() WHERE merchant_id = @MerchantId AND plan_id = @PlanId;
        UPDATE credit_bundles SET deleted_at = now() WHERE merchant_id = @MerchantId AND plan_id = @PlanId AND deleted_at IS NULL;
        """;

    /// <summary>
    /// Soft-deletes a plan and its bundles unless a subscription is active on it. The subscription check is its own
    /// statement after the lock: a subscription committed while we waited is then visible (read committed).
    /// </summary>
    public async Task<PlanWrite> DeleteAsync(string merchantId, string planId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var args = new { MerchantId = merchantId, PlanId = planId };
        var locked = await connection.QuerySingleOrDefaultAsync<(decimal, string?)?>(new CommandDefinition(LockPlan, args, tx, cancellationToken: ct));
        if (locked is null) return new PlanWrite.NotFound();
        if (await connection.ExecuteScalarAsync<bool>(new CommandDefinition(SelectActiveSubscription, args, tx, cancellationToken: ct)))
            return new PlanWrite.InUse();
        await connection.ExecuteAsync(new CommandDefinition(SoftDeletePlan, args, tx, cancellationToken: ct));
        await tx.CommitAsync(ct);
        return new PlanWrite.Deleted();
    }

    // KEY SHARE keeps a checked meter from being removed (hard-deleted) before the links are inserted, without blocking
    // renames, new prices or soft deletes: a meter soft-deleted after this check simply drops out of plan reads.
    private const string SelectLiveMeters = """
        SELECT meter_id FROM meters WHERE merchant_id = @MerchantId AND meter_id = ANY(@MeterIds) AND deleted_at IS NULL
           FOR KEY SHARE
        """;

    private static async Task<List<string>> UnknownMetersAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string merchantId,
        string[] meterIds, CancellationToken ct)
    {
        if (meterIds.Length == 0) return [];
        var found = await connection.QueryAsync<string>(new CommandDefinition(SelectLiveMeters,
            new { MerchantId = merchantId, MeterIds = meterIds }, tx, cancellationToken: ct));
        return meterIds.Except(found, StringComparer.Ordinal).ToList();
    }

    private static PlanWrite.Invalid UnknownMeters(List<string> unknown) =>
        new(new Dictionary<string, string[]> { ["meter_ids"] = unknown.Select(id => $"'{id}' is not a live meter").ToArray() });

    private const string UnlinkMeters = """
        DELETE FROM plan_meters WHERE merchant_id = @MerchantId AND plan_id = @PlanId
        """;

    private const string LinkMeters = """
        INSERT INTO plan_meters (merchant_id, plan_id, meter_id)
        SELECT @MerchantId, @PlanId, m.meter_id FROM unnest(@MeterIds) AS m(meter_id)
        """;

    private static Task LinkMetersAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string merchantId, string planId,
        string[] meterIds, CancellationToken ct) =>
        meterIds.Length == 0
            ? Task.CompletedTask
            : connection.ExecuteAsync(new CommandDefinition(LinkMeters,
                new { MerchantId = merchantId, PlanId = planId, MeterIds = meterIds }, tx, cancellationToken: ct));

    private const string InsertBundles = """
        INSERT INTO credit_bundles (merchant_id, credit_bundle_id, plan_id, name, cost, credit_amount, position)
        SELECT @MerchantId, b.id, @PlanId, b.name, b.cost, b.credit_amount, b.position
          FROM unnest(@Ids, @Names, @Costs, @CreditAmounts, @Positions) AS b(id, name, cost, credit_amount, position)
        """;

    private static Task InsertBundlesAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string merchantId, string planId,
        IReadOnlyList<BundleWrite> bundles, CancellationToken ct) =>
        bundles.Count == 0
            ? Task.CompletedTask
            : connection.ExecuteAsync(new CommandDefinition(InsertBundles, new
            {
                MerchantId = merchantId, PlanId = planId,
                Ids = bundles.Select(b => b.CreditBundleId).ToArray(), Names = bundles.Select(b => b.Name).ToArray(),
                Costs = bundles.Select(b => b.Cost).ToArray(), CreditAmounts = bundles.Select(b => b.CreditAmount).ToArray(),
                Positions = bundles.Select(b => b.Position).ToArray(),
            }, tx, cancellationToken: ct));

    private const string ChangeBundles = """
        UPDATE credit_bundles b
           SET name = c.name, cost = c.cost, credit_amount = c.credit_amount
          FROM unnest(@Ids, @Names, @Costs, @CreditAmounts) AS c(id, name, cost, credit_amount)
         WHERE b.merchant_id = @MerchantId AND b.plan_id = @PlanId AND b.credit_bundle_id = c.id AND b.deleted_at IS NULL
        """;

    private static Task ChangeBundlesAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string merchantId, string planId,
        IReadOnlyList<BundleWrite> bundles, CancellationToken ct) =>
        bundles.Count == 0
            ? Task.CompletedTask
            : connection.ExecuteAsync(new CommandDefinition(ChangeBundles, new
            {
                MerchantId = merchantId, PlanId = planId,
                Ids = bundles.Select(b => b.CreditBundleId).ToArray(), Names = bundles.Select(b => b.Name).ToArray(),
                Costs = bundles.Select(b => b.Cost).ToArray(), CreditAmounts = bundles.Select(b => b.CreditAmount).ToArray(),
            }, tx, cancellationToken: ct));

    // Subscriptions that topped up from a deleted bundle stop pointing at it.
    private const string DeleteBundles = """
        WITH deleted AS (
            UPDATE credit_bundles SET deleted_at = now()
             WHERE merchant_id = @MerchantId AND plan_id = @PlanId AND credit_bundle_id = ANY(@Ids) AND deleted_at IS NULL
            RETURNING credit_bundle_id
        )
        UPDATE subscriptions SET auto_top_up_bundle_id = NULL
         WHERE merchant_id = @MerchantId AND auto_top_up_bundle_id IN (SELECT credit_bundle_id FROM deleted)
        """;

    private static Task DeleteBundlesAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string merchantId, string planId,
        IReadOnlyList<string> ids, CancellationToken ct) =>
        ids.Count == 0
            ? Task.CompletedTask
            : connection.ExecuteAsync(new CommandDefinition(DeleteBundles,
                new { MerchantId = merchantId, PlanId = planId, Ids = ids.ToArray() }, tx, cancellationToken: ct));
}
