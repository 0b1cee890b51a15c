using Dapper;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Resilience;
using Lava.Billing.Ledger;
using Npgsql;

namespace Lava.Billing.Subscriptions;

/// <summary>
/// Closes every cycle that has ended: unused cycle credit expires into breakage revenue unless the plan rolls it over
/// (bundle credit likewise, by bundle_rollover_type); then the subscription either ends (cancelled at cycle end) or
/// renews, granting the next cycle's credit. Safe with several instances: each subscription is taken with
/// FOR UPDATE SKIP LOCKED, and every posting is unique on (kind, reference), so a cycle is never granted twice.
/// </summary>
public sealed class CycleProcessor(NpgsqlDataSource db, ILogger<CycleProcessor> log)
{
    private const int BatchSize = 100;

    // Across merchants on purpose: the worker serves them all. On a sharded cluster this is the one all-shard query,
    // made cheap by the partial index on due cycles. Keyset-paged within a run, so a subscription that failed is passed
    // over (and retried next run) instead of being read again before the ones behind it.
    private const string SelectDue = """
        SELECT merchant_id, subscription_id, cycle_end_at FROM subscriptions
         WHERE status = 'active' AND cycle_end_at <= @Now
           AND (cycle_end_at, merchant_id, subscription_id) > (@AfterEnd, @AfterMerchant, @AfterId)
         ORDER BY cycle_end_at, merchant_id, subscription_id
         LIMIT @Take
        """;

    /// <summary>
    /// Processes every cycle due at <paramref name="now"/>; returns how many cycles it closed. Each subscription is
    /// settled on its own, in its own transactions: one that fails is logged with its ids and skipped, and the others
    /// are still renewed.
    /// </summary>
    public async Task<int> RunDueAsync(DateTimeOffset now, CancellationToken ct)
    {
        var closed = 0;
        var after = (End: DateTime.MinValue, MerchantId: "", SubscriptionId: "");
        while (true)
        {
            List<(string MerchantId, string SubscriptionId, DateTime CycleEndAt)> due;
            await using (var c = await db.OpenConnectionAsync(ct))
            {
                due = (await c.QueryAsync<(string, string, DateTime)>(new CommandDefinition(SelectDue, new
                {
                    Now = now.UtcDateTime, AfterEnd = DateTime.SpecifyKind(after.End, DateTimeKind.Utc), AfterMerchant = after.MerchantId,
                    AfterId = after.SubscriptionId, Take = BatchSize,
                }, cancellationToken: ct))).AsList();
            }
            foreach (var (merchantId, subscriptionId, cycleEndAt) in due)
            {
                after = (cycleEndAt, merchantId, subscriptionId);
                try
                {
                    closed += await CloseDueCyclesAsync(merchantId, subscriptionId, now, ct);
                }
                // A lost database fails every subscription alike: the run stops and the worker reports the outage once.
                catch (Exception e) when (!(e is OperationCanceledException && ct.IsCancellationRequested) && !DatabaseRetry.IsConnectionFailure(e))
                {
                    var errorId = Ids.New("err");
                    log.LogError(e, "Cycle of subscription {SubscriptionId} of merchant {MerchantId} could not be closed ({ErrorId}); " +
                                    "skipped until the next run", subscriptionId, merchantId, errorId);
                }
            }
            if (due.Count < BatchSize) return closed;
        }
    }

    private sealed record Due(
        string CustomerId, int CycleNumber, DateTime StartedAt, DateTime CycleEndAt, bool CancelAtCycleEnd,
        decimal PeriodAmount, decimal IncludedCredit, string BillingInterval, string RolloverType, string BundleRolloverType);

    private const string LockDue = """
        SELECT s.customer_id, s.cycle_number, s.started_at, s.cycle_end_at, s.cancel_at_cycle_end,
               p.period_amount, p.included_credit, p.billing_interval, p.rollover_type, p.bundle_rollover_type
          FROM subscriptions s
          JOIN plans p ON p.merchant_id = s.merchant_id AND p.plan_id = s.plan_id
         WHERE s.merchant_id = @MerchantId AND s.subscription_id = @Id AND s.status = 'active' AND s.cycle_end_at <= @Now
           FOR UPDATE OF s SKIP LOCKED
        """;

    private const string Renew = """
        UPDATE subscriptions SET cycle_number = @Cycle, cycle_start_at = @Start, cycle_end_at = @End
         WHERE merchant_id = @MerchantId AND subscription_id = @Id
        """;

    private const string End = """
        UPDATE subscriptions SET status = 'cancelled', cancelled_at = @At
         WHERE merchant_id = @MerchantId AND subscription_id = @Id
        """;

    private async Task<int> CloseDueCyclesAsync(string merchantId, string subscriptionId, DateTimeOffset now, CancellationToken ct)
    {
        var closed = 0;
        while (true)
        {
            await using var c = await db.OpenConnectionAsync(ct);
            await using var tx = await c.BeginTransactionAsync(ct);
            var args = new { MerchantId = merchantId, Id = subscriptionId, Now = now.UtcDateTime };
            var due = await c.QuerySingleOrDefaultAsync<Due>(new CommandDefinition(LockDue, args, tx, cancellationToken: ct));
            if (due is null) return closed;

            var balances = await CustomerBalances.LockAsync(c, tx, merchantId, due.CustomerId, ct)
                           ?? throw new InvalidOperationException($"customer {due.CustomerId} has no balance rows");
            var cycleEnd = new DateTimeOffset(DateTime.SpecifyKind(due.CycleEndAt, DateTimeKind.Utc));
            var reference = LedgerKinds.CycleReference(subscriptionId, due.CycleNumber);
            if (due.RolloverType == "none")
                await ExpireAsync(c, tx, merchantId, due.CustomerId, LedgerKinds.CycleExpiry, reference, LedgerAccounts.CreditsCycle(due.CustomerId), balances.CycleRemaining, cycleEnd, ct);
            if (due.BundleRolloverType == "none")
                await ExpireAsync(c, tx, merchantId, due.CustomerId, LedgerKinds.BundleExpiry, reference, LedgerAccounts.CreditsBundle(due.CustomerId), balances.BundleRemaining, cycleEnd, ct);

            if (due.CancelAtCycleEnd)
            {
                await c.ExecuteAsync(new CommandDefinition(End, new { MerchantId = merchantId, Id = subscriptionId, At = due.CycleEndAt }, tx, cancellationToken: ct));
            }
            else
            {
                var anchor = new DateTimeOffset(DateTime.SpecifyKind(due.StartedAt, DateTimeKind.Utc));
                var next = due.CycleNumber + 1;
                await c.ExecuteAsync(new CommandDefinition(Renew, new
                {
                    MerchantId = merchantId, Id = subscriptionId, Cycle = next,
                    Start = due.CycleEndAt, End = BillingCycles.End(anchor, due.BillingInterval, next).UtcDateTime,
                }, tx, cancellationToken: ct));
                await LedgerWriter.PostAsync(c, tx, merchantId, SubscriptionStore.CycleGrantTransaction(
                    subscriptionId, next, due.CustomerId, due.PeriodAmount, due.IncludedCredit, cycleEnd), ct);
            }
            await tx.CommitAsync(ct);
            closed++;
            log.LogInformation("Closed cycle {Cycle} of subscription {Subscription}", due.CycleNumber, subscriptionId);
        }
    }

    private static Task ExpireAsync(NpgsqlConnection c, NpgsqlTransaction tx, string merchantId, string customerId, string kind,
        string reference, string account, decimal remaining, DateTimeOffset at, CancellationToken ct) =>
        remaining <= 0
            ? Task.CompletedTask
            : LedgerWriter.PostAsync(c, tx, merchantId, new LedgerWriter.Transaction(Ids.New("txn", at), kind, reference, customerId, at,
                UsagePosting.Expiry(account, remaining)), ct);
}

/// <summary>Runs the cycle processor periodically (<c>Billing:CycleCheckSeconds</c>, default 30).</summary>
public sealed class CycleWorker(CycleProcessor processor, TimeProvider clock, IConfiguration configuration, ILogger<CycleWorker> log)
    : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var period = TimeSpan.FromSeconds(Math.Clamp(configuration.GetValue("Billing:CycleCheckSeconds", 30), 1, 3600));
        var outage = new OutageLog(log, clock, "Subscription cycle processing");
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await processor.RunDueAsync(clock.GetUtcNow(), stoppingToken);
                outage.Succeeded();
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                if (!outage.Failed(e)) log.LogError(e, "Cycle processing failed; retrying in {Period}", period);
            }
            await Task.Delay(period, stoppingToken).ContinueWith(_ => { }, CancellationToken.None);
        }
    }
}
