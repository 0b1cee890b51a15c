using Dapper;
using Lava.Billing.Infrastructure;
using Lava.Billing.Ledger;
using Lava.Billing.Plans;
using Npgsql;

namespace Lava.Billing.Subscriptions;

public sealed class SubscriptionStore(NpgsqlDataSource db)
{
    private sealed record Row(
        string SubscriptionId, string PlanId, string Status, string? AutoTopUpBundleId, DateTime StartedAt, DateTime? CancelledAt,
        DateTime CycleStartAt, DateTime CycleEndAt, bool CancelAtCycleEnd, string PlanName, decimal PeriodAmount, decimal IncludedCredit,
        string BillingInterval, string RolloverType, string BundleRolloverType, string CustomerId, string? Phone, string? Email,
        string? CustomerName, decimal CycleBalance, decimal BundleBalance);

    private const string Projection = """
        SELECT s.subscription_id, s.plan_id, s.status, s.auto_top_up_bundle_id, s.started_at, s.cancelled_at,
               s.cycle_start_at, s.cycle_end_at, s.cancel_at_cycle_end,
               p.name AS plan_name, p.period_amount, p.included_credit, p.billing_interval, p.rollover_type, p.bundle_rollover_type,
               s.customer_id, c.phone, c.email, c.name AS customer_name,
               cyc.balance AS cycle_balance, bun.balance AS bundle_balance
          FROM subscriptions s
          JOIN plans p ON p.merchant_id = s.merchant_id AND p.plan_id = s.plan_id
          JOIN customers c ON c.merchant_id = s.merchant_id AND c.customer_id = s.customer_id
          JOIN account_balances cyc ON cyc.merchant_id = s.merchant_id AND cyc.account_id = s.customer_id || ':credits_cycle'
          JOIN account_balances bun ON bun.merchant_id = s.merchant_id AND bun.account_id = s.customer_id || ':credits_bundle'
        """;

    private static RestSubscription Map(Row r)
    {
        var cycle = Math.Max(-r.CycleBalance, 0);
        var bundle = Math.Max(-r.BundleBalance, 0);
        var name = r.CustomerName ?? "";
        var space = name.IndexOf(' ');
        return new RestSubscription(
            r.SubscriptionId, r.PlanId, r.Status, r.AutoTopUpBundleId, Utc(r.StartedAt), r.CancelledAt is { } c ? Utc(c) : null,
            Utc(r.CycleStartAt), Utc(r.CycleEndAt),
            new SubscriptionPlan(r.PlanName, Money.Format(r.PeriodAmount), Money.Format(r.IncludedCredit), r.BillingInterval,
                r.RolloverType, r.BundleRolloverType),
            new SubscriptionCredits(Money.Format(cycle + bundle), Money.Format(cycle), Money.Format(bundle)),
            r.Status == "active" && r.CancelAtCycleEnd ? new PendingChange("cancellation", Utc(r.CycleEndAt)) : null,
            r.CustomerId,
            new SubscriptionCustomer(r.Phone ?? "", r.Email, space < 0 ? (name.Length > 0 ? name : null) : name[..space],
                space < 0 ? null : name[(space + 1)..]));
    }

    private static DateTimeOffset Utc(DateTime d) => new(DateTime.SpecifyKind(d, DateTimeKind.Utc));

    private const string WhereId = Projection + " WHERE s.merchant_id = @MerchantId AND s.subscription_id = @Id";

    public async Task<RestSubscription?> FindAsync(string merchantId, string subscriptionId, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        var row = await c.QuerySingleOrDefaultAsync<Row>(new CommandDefinition(WhereId, new { MerchantId = merchantId, Id = subscriptionId }, cancellationToken: ct));
        return row is null ? null : Map(row);
    }

    private const string WhereActiveForCustomer = Projection +
        " WHERE s.merchant_id = @MerchantId AND s.customer_id = @CustomerId AND s.status = 'active'";

    public async Task<RestSubscription?> FindActiveForCustomerAsync(string merchantId, string customerId, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        var row = await c.QuerySingleOrDefaultAsync<Row>(new CommandDefinition(WhereActiveForCustomer,
            new { MerchantId = merchantId, CustomerId = customerId }, cancellationToken: ct));
        return row is null ? null : Map(row);
    }

    private const string Page = Projection + """
         WHERE s.merchant_id = @MerchantId
           AND s.subscription_id > @After
           AND (@Status::text IS NULL OR s.status = @Status)
           AND (@CustomerId::text IS NULL OR s.customer_id = @CustomerId)
         ORDER BY s.subscription_id
         LIMIT @Take
        """;

    public async Task<List<RestSubscription>> ListAsync(string merchantId, string? status, string? customerId, string? after, int take, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        var rows = await c.QueryAsync<Row>(new CommandDefinition(Page,
            new { MerchantId = merchantId, Status = status, CustomerId = customerId, After = after ?? "", Take = take }, cancellationToken: ct));
        return rows.Select(Map).ToList();
    }

    public enum CreateOutcome { Created, CustomerNotFound, PlanNotFound, AlreadyActive, AmountOutOfRange }

    private const string Insert = """
        INSERT INTO subscriptions (merchant_id, subscription_id, customer_id, plan_id, status, auto_top_up_bundle_id, started_at,
                                   cycle_number, cycle_start_at, cycle_end_at)
        VALUES (@MerchantId, @SubscriptionId, @CustomerId, @PlanId, 'active', @AutoTopUpBundleId, @Start, 1, @Start, @End)
        ON CONFLICT (merchant_id, customer_id) WHERE status = 'active' DO NOTHING
        RETURNING subscription_id
        """;

    /// <summary>
    /// Starts a subscription and records its first cycle's payment (payment taken outside this service), all or nothing.
    /// Locks in the order every writer of these rows uses: plan (shared, its terms read under the lock), customer
    /// (shared), the new subscription, then the customer's balances (through the posting).
    /// </summary>
    public async Task<(CreateOutcome Outcome, string? SubscriptionId)> CreateAsync(
        string merchantId, string customerId, string planId, DateTimeOffset now, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        await using var tx = await c.BeginTransactionAsync(ct);
        var created = await CreateAsync(c, tx, merchantId, customerId, planId, now, ct);
        if (created.Outcome == CreateOutcome.Created) await tx.CommitAsync(ct);
        return created;
    }

    /// <summary>The same inside the caller's transaction, which commits it (a completed checkout session).</summary>
    public static async Task<(CreateOutcome Outcome, string? SubscriptionId)> CreateAsync(NpgsqlConnection c, NpgsqlTransaction tx,
        string merchantId, string customerId, string planId, DateTimeOffset now, CancellationToken ct)
    {
        if (await PlanStore.ShareLiveAsync(c, tx, merchantId, planId, ct) is not { } plan) return (CreateOutcome.PlanNotFound, null);
        if (!await CustomerLiveAsync(c, tx, merchantId, customerId, ct)) return (CreateOutcome.CustomerNotFound, null);
        var subscriptionId = Ids.New("sub", now);
        var end = BillingCycles.End(now, plan.BillingInterval, 1);
        var inserted = await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition(Insert, new
        {
            MerchantId = merchantId, SubscriptionId = subscriptionId, CustomerId = customerId, plan.PlanId,
            AutoTopUpBundleId = plan.DefaultAutoTopUpBundleId, Start = now.UtcDateTime, End = end.UtcDateTime,
        }, tx, cancellationToken: ct));
        if (inserted is null) return (CreateOutcome.AlreadyActive, null);
        // All of the customer's balance rows, in the order every writer takes them: the grant moves one, and the webhook
        // outbox's commit-time trigger reads them all; taking only one here could deadlock against a concurrent report.
        await CustomerBalances.LockAsync(c, tx, merchantId, customerId, ct);
        try
        {
            await LedgerWriter.PostAsync(c, tx, merchantId, CycleGrantTransaction(subscriptionId, 1, customerId, plan.PeriodAmount, plan.IncludedCredit, now), ct);
        }
        catch (PostgresException e) when (AmountBounds.IsCrossing(e))
        {
            // The grant would take the customer's credits past their bound (credits kept from an earlier subscription).
            return (CreateOutcome.AmountOutOfRange, null);
        }
        return (CreateOutcome.Created, subscriptionId);
    }

    internal static LedgerWriter.Transaction CycleGrantTransaction(string subscriptionId, int cycle, string customerId,
        decimal periodAmount, decimal includedCredit, DateTimeOffset at) =>
        new(Ids.New("txn", at), LedgerKinds.CycleGrant, LedgerKinds.CycleReference(subscriptionId, cycle), customerId, at,
            UsagePosting.CycleGrant(customerId, periodAmount, includedCredit),
            System.Text.Json.JsonSerializer.Serialize(new { subscription_id = subscriptionId, cycle, period_amount = periodAmount, included_credit = includedCredit }));

    // Shares the customer row: a customer delete locks it, then checks for an active subscription.
    private const string ShareLiveCustomer = """
        SELECT customer_id FROM customers WHERE merchant_id = @MerchantId AND customer_id = @CustomerId AND deleted_at IS NULL FOR SHARE
        """;

    private static async Task<bool> CustomerLiveAsync(NpgsqlConnection c, NpgsqlTransaction tx, string merchantId, string customerId, CancellationToken ct) =>
        await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition(ShareLiveCustomer,
            new { MerchantId = merchantId, CustomerId = customerId }, tx, cancellationToken: ct)) is not null;

    private const string MeterOnActivePlan = """
        SELECT EXISTS (
            SELECT 1 FROM subscriptions s
              JOIN plan_meters pm ON pm.merchant_id = s.merchant_id AND pm.plan_id = s.plan_id
             WHERE s.merchant_id = @MerchantId AND s.customer_id = @CustomerId AND s.status = 'active' AND pm.meter_id = @MeterId)
        """;

    /// <summary>Entitlement: the meter is linked to the customer's active plan.</summary>
    public async Task<bool> IsMeterOnActivePlanAsync(string merchantId, string customerId, string meterId, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        return await c.ExecuteScalarAsync<bool>(new CommandDefinition(MeterOnActivePlan,
            new { MerchantId = merchantId, CustomerId = customerId, MeterId = meterId }, cancellationToken: ct));
    }

    private const string UpdateAutoTopUp = """
        UPDATE subscriptions s SET auto_top_up_bundle_id = @BundleId
         WHERE s.merchant_id = @MerchantId AND s.subscription_id = @Id AND s.status = 'active'
           AND (@BundleId::text IS NULL OR EXISTS (
                SELECT 1 FROM credit_bundles b
                 WHERE b.merchant_id = s.merchant_id AND b.credit_bundle_id = @BundleId AND b.plan_id = s.plan_id AND b.deleted_at IS NULL))
        RETURNING s.subscription_id
        """;

    public async Task<bool> SetAutoTopUpAsync(string merchantId, string subscriptionId, string? bundleId, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        return await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition(UpdateAutoTopUp,
            new { MerchantId = merchantId, Id = subscriptionId, BundleId = bundleId }, cancellationToken: ct)) is not null;
    }

    private const string Cancel = """
        UPDATE subscriptions SET cancel_at_cycle_end = true
         WHERE merchant_id = @MerchantId AND subscription_id = @Id AND status = 'active'
        RETURNING subscription_id
        """;

    /// <summary>Cancels at the end of the current cycle: credits already paid for stay usable until then.</summary>
    public async Task<bool> CancelAtCycleEndAsync(string merchantId, string subscriptionId, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        return await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition(Cancel,
            new { MerchantId = merchantId, Id = subscriptionId }, cancellationToken: ct)) is not null;
    }
}
