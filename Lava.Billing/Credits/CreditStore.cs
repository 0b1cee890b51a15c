using System.Text.Json;
using Dapper;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Ledger;
using Lava.Billing.Plans;
using Npgsql;

namespace Lava.Billing.Credits;

/// <summary>
/// What a customer can pay for before work runs: balances, holds and bought credit packs. Every writer here locks the
/// customer's balance rows first (the order the report path uses too), so racing holds never reserve more than exists.
/// </summary>
public sealed class CreditStore(NpgsqlDataSource db)
{
    // Whether plan credits count depends on the meter the money is for (UsagePosting.PlanCreditsUsable); without a
    // meter they count, as for a customer without a plan.
    private const string SelectLimitAndHeld = """
        SELECT c.credit_limit,
               (SELECT coalesce(sum(h.amount), 0) FROM holds h
                 WHERE h.merchant_id = c.merchant_id AND h.customer_id = c.customer_id AND h.status = 'active' AND h.expires_at > @Now),
               s.plan_id IS NOT NULL AND @MeterId::text IS NOT NULL,
               EXISTS (SELECT 1 FROM plan_meters pm WHERE pm.merchant_id = s.merchant_id AND pm.plan_id = s.plan_id AND pm.meter_id = @MeterId)
          FROM customers c
          LEFT JOIN subscriptions s ON s.merchant_id = c.merchant_id AND s.customer_id = c.customer_id AND s.status = 'active'
         WHERE c.merchant_id = @MerchantId AND c.customer_id = @CustomerId AND c.deleted_at IS NULL
        """;

    private sealed record Limits(decimal CreditLimit, decimal Held, bool MeterUnderPlan, bool MeterOnPlan);

    public async Task<CustomerBalanceResponse?> BalanceAsync(string merchantId, string customerId, DateTimeOffset now, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        if (await CustomerBalances.ReadAsync(c, merchantId, customerId, ct) is not { } balances) return null;
        var limits = await c.QuerySingleOrDefaultAsync<(decimal CreditLimit, decimal Held, bool MeterUnderPlan, bool MeterOnPlan)?>(
            new CommandDefinition(SelectLimitAndHeld,
                new { MerchantId = merchantId, CustomerId = customerId, MeterId = (string?)null, Now = now.UtcDateTime }, cancellationToken: ct));
        return limits is { } l ? Balance(customerId, balances, new Limits(l.CreditLimit, l.Held, l.MeterUnderPlan, l.MeterOnPlan)) : null;
    }

    private static CustomerBalanceResponse Balance(string customerId, CustomerBalances balances, Limits l)
    {
        // Available = usable credits + the unused part of the credit limit − what holds have reserved.
        var credits = UsagePosting.PlanCreditsUsable(l.MeterUnderPlan, l.MeterOnPlan) ? balances.CreditsRemaining : 0;
        var available = credits + Math.Max(l.CreditLimit - balances.Receivable, 0) - l.Held;
        return new CustomerBalanceResponse(customerId, Money.Format(balances.CycleRemaining), Money.Format(balances.BundleRemaining),
            Money.Format(balances.CreditsRemaining), Money.Format(l.CreditLimit), Money.Format(balances.Receivable), Money.Format(l.Held),
            Money.Format(available));
    }

    public abstract record HoldOutcome
    {
        public sealed record Created(HoldResponse Hold) : HoldOutcome;
        public sealed record CustomerNotFound : HoldOutcome;
        public sealed record Insufficient(string Available) : HoldOutcome;
    }

    private const string InsertHold = """
        INSERT INTO holds (merchant_id, hold_id, customer_id, amount, status, expires_at, created_at)
        VALUES (@MerchantId, @HoldId, @CustomerId, @Amount, 'active', @ExpiresAt, @Now)
        """;

    /// <summary>
    /// A hold taken in two round trips of its caller's transaction: its reads (the customer's balance rows locked, the
    /// limit and what is held) go in the batch that begins it, the decision is made here, and its insert goes in the
    /// batch that commits it, with whatever the hold was taken for (a gateway call's record).
    /// </summary>
    public sealed class HoldRequest(string merchantId, string customerId, string? meterId, decimal amount, TimeSpan expiresIn, DateTimeOffset now)
    {
        public IEnumerable<NpgsqlBatchCommand> Reads() =>
        [
            CustomerBalances.LockCommand(merchantId, customerId),
            new(SelectLimitAndHeld)
            {
                Parameters =
                {
                    new NpgsqlParameter<string>("MerchantId", merchantId),
                    new NpgsqlParameter<string>("CustomerId", customerId),
                    new NpgsqlParameter("MeterId", NpgsqlTypes.NpgsqlDbType.Text) { Value = (object?)meterId ?? DBNull.Value },
                    new NpgsqlParameter<DateTime>("Now", now.UtcDateTime),
                },
            },
        ];

        /// <summary>Reads the results of <see cref="Reads"/>, the reader standing on the first; granted, the hold to insert.</summary>
        public async Task<HoldOutcome> DecideAsync(NpgsqlDataReader reader, CancellationToken ct)
        {
            var balances = await CustomerBalances.ReadLockedAsync(reader, customerId, ct);
            await reader.NextResultAsync(ct);
            Limits? limits = null;
            if (await reader.ReadAsync(ct))
                limits = new Limits(reader.GetDecimal(0), reader.GetDecimal(1), reader.GetBoolean(2), reader.GetBoolean(3));
            if (balances is null || limits is null) return new HoldOutcome.CustomerNotFound();
            var available = Balance(customerId, balances, limits).Available;
            if (amount > decimal.Parse(available, System.Globalization.CultureInfo.InvariantCulture)) return new HoldOutcome.Insufficient(available);
            return new HoldOutcome.Created(new HoldResponse(Ids.New("hld", now), customerId, Money.Format(amount), "active", now + expiresIn,
                null, null, now));
        }

        /// <summary>The insert of a granted hold, for the batch that commits it.</summary>
        public NpgsqlBatchCommand Insert(HoldResponse hold) => new(InsertHold)
        {
            Parameters =
            {
                new NpgsqlParameter<string>("MerchantId", merchantId),
                new NpgsqlParameter<string>("HoldId", hold.HoldId),
                new NpgsqlParameter<string>("CustomerId", customerId),
                new NpgsqlParameter<decimal>("Amount", amount),
                new NpgsqlParameter<DateTime>("ExpiresAt", hold.ExpiresAt.UtcDateTime),
                new NpgsqlParameter<DateTime>("Now", now.UtcDateTime),
            },
        };
    }

    /// <summary>Reserves <paramref name="amount"/> for work on <paramref name="meterId"/> (null: any meter).</summary>
    public async Task<HoldOutcome> CreateHoldAsync(string merchantId, string customerId, string? meterId, decimal amount, TimeSpan expiresIn,
        DateTimeOffset now, CancellationToken ct)
    {
        var request = new HoldRequest(merchantId, customerId, meterId, amount, expiresIn, now);
        await using var c = await db.OpenConnectionAsync(ct);
        var committed = false;
        try
        {
            HoldOutcome outcome;
            await using (var reads = new NpgsqlBatch(c))
            {
                reads.BatchCommands.Add(new NpgsqlBatchCommand("BEGIN"));
                foreach (var read in request.Reads()) reads.BatchCommands.Add(read);
                await using var reader = await reads.ExecuteReaderAsync(ct);
                outcome = await request.DecideAsync(reader, ct);
            }
            if (outcome is not HoldOutcome.Created created) return outcome;
            await using (var write = new NpgsqlBatch(c))
            {
                write.BatchCommands.Add(request.Insert(created.Hold));
                write.BatchCommands.Add(new NpgsqlBatchCommand("COMMIT"));
                // Not cancelled once decided: a caller leaving mid-COMMIT would leave it unknown whether the hold was
                // reserved; finished, it is, and expires as any unused hold does.
                await write.ExecuteNonQueryAsync(CancellationToken.None);
            }
            committed = true;
            return outcome;
        }
        finally
        {
            if (!committed && c.State == System.Data.ConnectionState.Open)
            {
                await using var rollback = new NpgsqlCommand("ROLLBACK", c);
                await rollback.ExecuteNonQueryAsync(CancellationToken.None);
            }
        }
    }

    private sealed record HoldRow(string HoldId, string CustomerId, decimal Amount, string Status, DateTime ExpiresAt,
        decimal? CapturedAmount, string? RequestId, DateTime CreatedAt);

    private static HoldResponse Map(HoldRow h, DateTimeOffset now)
    {
        var expiresAt = new DateTimeOffset(DateTime.SpecifyKind(h.ExpiresAt, DateTimeKind.Utc));
        var status = h.Status == "active" && expiresAt <= now ? "expired" : h.Status;
        return new HoldResponse(h.HoldId, h.CustomerId, Money.Format(h.Amount), status, expiresAt, Money.Format(h.CapturedAmount),
            h.RequestId, new DateTimeOffset(DateTime.SpecifyKind(h.CreatedAt, DateTimeKind.Utc)));
    }

    private const string SelectHold = """
        SELECT hold_id, customer_id, amount, status, expires_at, captured_amount, request_id, created_at
          FROM holds WHERE merchant_id = @MerchantId AND hold_id = @HoldId
        """;

    public async Task<HoldResponse?> FindHoldAsync(string merchantId, string holdId, DateTimeOffset now, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        var row = await c.QuerySingleOrDefaultAsync<HoldRow>(new CommandDefinition(SelectHold, new { MerchantId = merchantId, HoldId = holdId }, cancellationToken: ct));
        return row is null ? null : Map(row, now);
    }

    private const string VoidHold = """
        UPDATE holds SET status = 'voided', closed_at = @Now
         WHERE merchant_id = @MerchantId AND hold_id = @HoldId AND status = 'active'
        RETURNING hold_id, customer_id, amount, status, expires_at, captured_amount, request_id, created_at
        """;

    /// <summary>Voids an active hold; null when there is no active hold by that id (the caller tells 404 from 409).</summary>
    public async Task<HoldResponse?> VoidHoldAsync(string merchantId, string holdId, DateTimeOffset now, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        return await VoidHoldAsync(c, null, merchantId, holdId, now, ct);
    }

    /// <summary>The same inside the caller's transaction (a gateway call released with its record).</summary>
    public static async Task<HoldResponse?> VoidHoldAsync(NpgsqlConnection c, NpgsqlTransaction? tx, string merchantId, string holdId,
        DateTimeOffset now, CancellationToken ct)
    {
        var row = await c.QuerySingleOrDefaultAsync<HoldRow>(new CommandDefinition(VoidHold,
            new { MerchantId = merchantId, HoldId = holdId, Now = now.UtcDateTime }, tx, cancellationToken: ct));
        return row is null ? null : Map(row, now);
    }

    public abstract record PurchaseOutcome
    {
        public sealed record Created(string Response) : PurchaseOutcome;
        public sealed record Replayed(string Response) : PurchaseOutcome;
        public sealed record Refused(ProblemResult Problem) : PurchaseOutcome;
    }

    private const string SelectActivePlan = """
        SELECT plan_id FROM subscriptions WHERE merchant_id = @MerchantId AND customer_id = @CustomerId AND status = 'active'
        """;

    private const string InsertPurchase = """
        INSERT INTO bundle_purchases (merchant_id, idempotency_key, purchase_id, credit_bundle_id, customer_id, transaction_id, response, created_at)
        VALUES (@MerchantId, @Key, @PurchaseId, @BundleId, @CustomerId, @TransactionId, @Response, @Now)
        """;

    private const string SelectPurchase = """
        SELECT credit_bundle_id, customer_id, response FROM bundle_purchases WHERE merchant_id = @MerchantId AND idempotency_key = @Key
        """;

    /// <summary>
    /// Records a credit pack bought outside this service: payments clearing is debited the price, bundle credits credited.
    /// Idempotent on the Idempotency-Key, which is the ledger reference: a repeat answers the first response.
    /// </summary>
    public async Task<PurchaseOutcome> PurchaseAsync(string merchantId, BundleTerms bundle, string customerId, string idempotencyKey,
        DateTimeOffset now, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        await using (var tx = await c.BeginTransactionAsync(ct))
        {
            var balances = await CustomerBalances.LockAsync(c, tx, merchantId, customerId, ct);
            if (balances is null || !await Customers.CustomerStore.ExistsAsync(c, tx, merchantId, customerId, ct))
                return await ReplayOrAsync(c, merchantId, idempotencyKey, bundle.CreditBundleId, customerId, Problems.NotFound("customer", customerId), ct);
            var plan = await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition(SelectActivePlan,
                new { MerchantId = merchantId, CustomerId = customerId }, tx, cancellationToken: ct));
            if (plan != bundle.PlanId)
            {
                return await ReplayOrAsync(c, merchantId, idempotencyKey, bundle.CreditBundleId, customerId, Problems.Unprocessable(
                    "bundle_not_on_plan", $"Credit bundle '{bundle.CreditBundleId}' belongs to a plan the customer is not subscribed to."), ct);
            }
            var transactionId = Ids.New("txn", now);
            bool posted;
            try
            {
                posted = await LedgerWriter.PostAsync(c, tx, merchantId, new LedgerWriter.Transaction(transactionId, LedgerKinds.BundlePurchase,
                    idempotencyKey, customerId, now,
                    UsagePosting.BundlePurchase(customerId, LedgerAccounts.PaymentsClearing, bundle.Cost, bundle.CreditAmount),
                    JsonSerializer.Serialize(new { credit_bundle_id = bundle.CreditBundleId, cost = bundle.Cost, credit_amount = bundle.CreditAmount })), ct);
            }
            catch (PostgresException e) when (AmountBounds.IsCrossing(e))
            {
                // The database refused the balance this pack would leave; the transaction rolls back, nothing is posted.
                return new PurchaseOutcome.Refused(Problems.AmountOutOfRange(
                    $"Buying credit bundle '{bundle.CreditBundleId}' would take {AmountBounds.Describe(e)} past its bound; nothing was posted."));
            }
            if (posted)
            {
                var purchaseId = Ids.New("pur", now);
                var response = JsonSerializer.Serialize(new PurchaseResponse(purchaseId, bundle.CreditBundleId, customerId,
                    Money.Format(bundle.Cost), Money.Format(bundle.CreditAmount), transactionId,
                    Money.Format(balances.BundleRemaining + bundle.CreditAmount), now), LavaJson.Options);
                await c.ExecuteAsync(new CommandDefinition(InsertPurchase, new
                {
                    MerchantId = merchantId, Key = idempotencyKey, PurchaseId = purchaseId,
                    BundleId = bundle.CreditBundleId, CustomerId = customerId, TransactionId = transactionId, Response = response, Now = now.UtcDateTime,
                }, tx, cancellationToken: ct));
                await tx.CommitAsync(ct);
                return new PurchaseOutcome.Created(response);
            }
        }
        // The key was used first by a purchase that committed meanwhile.
        return await ReplayOrAsync(c, merchantId, idempotencyKey, bundle.CreditBundleId, customerId,
            Problems.Conflict("idempotency_conflict", "Idempotency-Key was used by another request."), ct);
    }

    /// <summary>The answer to a purchase already made with this key, if any: checked first, so a retry replays even
    /// after the bundle was deleted.</summary>
    public async Task<PurchaseOutcome?> FindPurchaseAsync(string merchantId, string key, string bundleId, string customerId, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        var outcome = await ReplayOrAsync(c, merchantId, key, bundleId, customerId, Problems.NotFound("purchase", key, "Idempotency-Key"), ct);
        return outcome is PurchaseOutcome.Refused { Problem.StatusCode: 404 } ? null : outcome;
    }

    private static async Task<PurchaseOutcome> ReplayOrAsync(NpgsqlConnection c, string merchantId, string key, string bundleId, string customerId,
        ProblemResult otherwise, CancellationToken ct)
    {
        var existing = await c.QuerySingleOrDefaultAsync<(string BundleId, string CustomerId, string Response)?>(new CommandDefinition(SelectPurchase,
            new { MerchantId = merchantId, Key = key }, cancellationToken: ct));
        if (existing is not { } e) return new PurchaseOutcome.Refused(otherwise);
        return e.BundleId == bundleId && e.CustomerId == customerId
            ? new PurchaseOutcome.Replayed(e.Response)
            : new PurchaseOutcome.Refused(Problems.Conflict("idempotency_conflict",
                $"Idempotency-Key '{key}' was already used for another purchase."));
    }
}
