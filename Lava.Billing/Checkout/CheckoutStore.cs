using System.Text.Json;
using Dapper;
using Lava.Billing.Credits;
using Lava.Billing.Customers;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Merchants;
using Lava.Billing.Plans;
using Lava.Billing.Subscriptions;
using Npgsql;

namespace Lava.Billing.Checkout;

public sealed record CheckoutSessionRow(
    string CheckoutSessionId, string CheckoutMode, string OriginUrl, string? CustomerId, string? PlanId, string? CreditBundleId,
    decimal Amount, bool TestMode, string Status, DateTime ExpiresAt, string? PaymentReference, string? SubscriptionId, string? TransactionId,
    DateTime CreatedAt, DateTime? CompletedAt)
{
    /// <summary>'open', 'completed', or 'expired': open past its expiry with no completion under way.</summary>
    public string StatusAt(DateTimeOffset now) =>
        Status == "open" && PaymentReference is null && ExpiresAt <= now.UtcDateTime ? "expired" : Status;
}

public sealed record NewCheckoutSession(string CheckoutMode, string OriginUrl, string? CustomerId, string? PlanId, string? CreditBundleId,
    decimal Amount, bool TestMode);

/// <summary>
/// Checkout sessions and their completion. Completing posts through the features that own the money: a subscription
/// through <see cref="SubscriptionStore"/> (its first cycle's payment and credit) in this store's transaction, a
/// credit bundle through <see cref="CreditStore"/>'s purchase, idempotent on a key derived from the session.
/// </summary>
public sealed class CheckoutStore(NpgsqlDataSource db, CreditStore credits, PlanStore plans)
{
    private const string Columns = """
        checkout_session_id, checkout_mode, origin_url, customer_id, plan_id, credit_bundle_id, amount, test_mode, status,
        expires_at, payment_reference, subscription_id, transaction_id, created_at, completed_at
        """;

    private const string Insert = $"""
        INSERT INTO checkout_sessions (merchant_id, checkout_session_id, token_hash, checkout_mode, origin_url, customer_id, plan_id,
                                       credit_bundle_id, amount, test_mode, expires_at, created_at)
        VALUES (@MerchantId, @Id, @TokenHash, @CheckoutMode, @OriginUrl, @CustomerId, @PlanId, @CreditBundleId, @Amount, @TestMode, @ExpiresAt, @Now)
        RETURNING {Columns}
        """;

    /// <summary>The token is stored as its SHA-256 only: the caller answers it once, and a database read cannot use it.</summary>
    public async Task<CheckoutSessionRow> CreateAsync(string merchantId, NewCheckoutSession s, string token, DateTimeOffset now,
        DateTimeOffset expiresAt, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        return await c.QuerySingleAsync<CheckoutSessionRow>(new CommandDefinition(Insert, new
        {
            MerchantId = merchantId, Id = Ids.New("cs", now), TokenHash = SecretKeys.Hash(token), s.CheckoutMode, s.OriginUrl, s.CustomerId, s.PlanId,
            s.CreditBundleId, s.Amount, s.TestMode, ExpiresAt = expiresAt.UtcDateTime, Now = now.UtcDateTime,
        }, cancellationToken: ct));
    }

    private const string Select = $"""
        SELECT {Columns} FROM checkout_sessions WHERE merchant_id = @MerchantId AND checkout_session_id = @Id
        """;

    public async Task<CheckoutSessionRow?> FindAsync(string merchantId, string id, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        return await c.QuerySingleOrDefaultAsync<CheckoutSessionRow>(new CommandDefinition(Select, new { MerchantId = merchantId, Id = id }, cancellationToken: ct));
    }

    private const string SelectByToken = """
        SELECT merchant_id, checkout_session_id FROM checkout_sessions WHERE token_hash = @TokenHash
        """;

    /// <summary>The test page's lookup: the token is all the browser has.</summary>
    public async Task<(string MerchantId, CheckoutSessionRow Session)?> FindByTokenAsync(string token, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        var key = await c.QuerySingleOrDefaultAsync<(string MerchantId, string SessionId)?>(new CommandDefinition(SelectByToken,
            new { TokenHash = SecretKeys.Hash(token) }, cancellationToken: ct));
        if (key is not { } k) return null;
        var row = await c.QuerySingleAsync<CheckoutSessionRow>(new CommandDefinition(Select,
            new { k.MerchantId, Id = k.SessionId }, cancellationToken: ct));
        return (k.MerchantId, row);
    }

    public abstract record CompleteOutcome
    {
        public sealed record Completed(CheckoutSessionRow Session) : CompleteOutcome;
        /// <summary>Completed before by the same payment: nothing posted again.</summary>
        public sealed record Replayed(CheckoutSessionRow Session) : CompleteOutcome;
        public sealed record NotFound : CompleteOutcome;
        public sealed record Expired(CheckoutSessionRow Session) : CompleteOutcome;
        /// <summary>Completed, or being completed, by another payment.</summary>
        public sealed record OtherPayment(CheckoutSessionRow Session) : CompleteOutcome;
        /// <summary>The payment already completed (or is completing) another session.</summary>
        public sealed record PaymentUsed : CompleteOutcome;
        public sealed record AmountMismatch(decimal Expected) : CompleteOutcome;
        public sealed record SubscriptionRefused(SubscriptionStore.CreateOutcome Outcome) : CompleteOutcome;
        public sealed record BundleNotFound(string CreditBundleId) : CompleteOutcome;
        public sealed record PurchaseRefused(ProblemResult Problem) : CompleteOutcome;
    }

    private const string SelectForUpdate = $"""
        SELECT {Columns} FROM checkout_sessions WHERE merchant_id = @MerchantId AND checkout_session_id = @Id FOR UPDATE
        """;

    private const string SelectByReference = """
        SELECT checkout_session_id FROM checkout_sessions
         WHERE merchant_id = @MerchantId AND payment_reference = @Reference AND checkout_session_id <> @Id
        """;

    private const string ClaimReference = """
        UPDATE checkout_sessions SET payment_reference = @Reference
         WHERE merchant_id = @MerchantId AND checkout_session_id = @Id AND status = 'open'
        """;

    private const string ReleaseReference = """
        UPDATE checkout_sessions SET payment_reference = NULL
         WHERE merchant_id = @MerchantId AND checkout_session_id = @Id AND status = 'open' AND payment_reference = @Reference
        """;

    private const string MarkCompleted = $"""
        UPDATE checkout_sessions
           SET status = 'completed', completed_at = @Now, payment_reference = @Reference, customer_id = @CustomerId,
               subscription_id = @SubscriptionId, transaction_id = @TransactionId
         WHERE merchant_id = @MerchantId AND checkout_session_id = @Id AND status = 'open'
        RETURNING {Columns}
        """;

    /// <summary>
    /// Completes a session with the payment that paid for it. The payment reference is written first, under the session's
    /// row lock: the same reference again is a replay (or resumes a completion cut short), another one is refused, and a
    /// reference that completed another session is refused, so one payment buys one thing once.
    /// </summary>
    public async Task<CompleteOutcome> CompleteAsync(string merchantId, string sessionId, string reference, decimal? amount, DateTimeOffset now,
        CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        CheckoutSessionRow session;
        await using (var tx = await c.BeginTransactionAsync(ct))
        {
            var found = await c.QuerySingleOrDefaultAsync<CheckoutSessionRow>(new CommandDefinition(SelectForUpdate,
                new { MerchantId = merchantId, Id = sessionId }, tx, cancellationToken: ct));
            if (found is null) return new CompleteOutcome.NotFound();
            session = found;
            if (session.Status == "completed")
                return session.PaymentReference == reference ? new CompleteOutcome.Replayed(session) : new CompleteOutcome.OtherPayment(session);
            if (session.PaymentReference is not null && session.PaymentReference != reference) return new CompleteOutcome.OtherPayment(session);
            // A completion already under way with this reference was paid before the session expired: it carries on.
            var resuming = session.PaymentReference == reference;
            if (!resuming && session.ExpiresAt <= now.UtcDateTime) return new CompleteOutcome.Expired(session);
            if (amount is { } paid && paid != session.Amount) return new CompleteOutcome.AmountMismatch(session.Amount);
            if (!resuming)
            {
                var other = await c.QuerySingleOrDefaultAsync<string>(new CommandDefinition(SelectByReference,
                    new { MerchantId = merchantId, Id = sessionId, Reference = reference }, tx, cancellationToken: ct));
                if (other is not null) return new CompleteOutcome.PaymentUsed();
                try
                {
                    await c.ExecuteAsync(new CommandDefinition(ClaimReference,
                        new { MerchantId = merchantId, Id = sessionId, Reference = reference }, tx, cancellationToken: ct));
                }
                catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.UniqueViolation)
                {
                    // Another session took the same reference a moment ago.
                    return new CompleteOutcome.PaymentUsed();
                }
            }
            if (session.CheckoutMode == CheckoutModes.Subscription)
                return await CompleteSubscriptionAsync(c, tx, merchantId, session, reference, now, ct);
            await tx.CommitAsync(ct);
        }
        return await CompleteBundleAsync(c, merchantId, session, reference, now, ct);
    }

    /// <summary>Buyer (when the session names none), subscription, first payment and credit, and the session: one transaction.</summary>
    private static async Task<CompleteOutcome> CompleteSubscriptionAsync(NpgsqlConnection c, NpgsqlTransaction tx, string merchantId,
        CheckoutSessionRow session, string reference, DateTimeOffset now, CancellationToken ct)
    {
        var customerId = session.CustomerId
            ?? (await CustomerStore.CreateAsync(c, tx, merchantId, new NewCustomer(null, null, null, null, null), ct)).CustomerId;
        var (outcome, subscriptionId) = await SubscriptionStore.CreateAsync(c, tx, merchantId, customerId, session.PlanId!, now, ct);
        if (outcome != SubscriptionStore.CreateOutcome.Created) return new CompleteOutcome.SubscriptionRefused(outcome);
        var completed = await c.QuerySingleAsync<CheckoutSessionRow>(new CommandDefinition(MarkCompleted, new
        {
            MerchantId = merchantId, Id = session.CheckoutSessionId, Now = now.UtcDateTime, Reference = reference, CustomerId = customerId,
            SubscriptionId = subscriptionId, TransactionId = (string?)null,
        }, tx, cancellationToken: ct));
        await tx.CommitAsync(ct);
        return new CompleteOutcome.Completed(completed);
    }

    /// <summary>
    /// The purchase is idempotent on a key made from the session, so a completion cut short after it (a crash, a lost
    /// answer) is finished by the retry without buying twice.
    /// </summary>
    private async Task<CompleteOutcome> CompleteBundleAsync(NpgsqlConnection c, string merchantId, CheckoutSessionRow session, string reference,
        DateTimeOffset now, CancellationToken ct)
    {
        var key = $"checkout:{session.CheckoutSessionId}";
        var purchase = await credits.FindPurchaseAsync(merchantId, key, session.CreditBundleId!, session.CustomerId!, ct);
        if (purchase is null)
        {
            if (await plans.FindLiveBundleAsync(merchantId, session.CreditBundleId!, ct) is not { } bundle)
            {
                await ReleaseAsync(c, merchantId, session, reference, ct);
                return new CompleteOutcome.BundleNotFound(session.CreditBundleId!);
            }
            purchase = await credits.PurchaseAsync(merchantId, bundle, session.CustomerId!, key, now, ct);
        }
        string response;
        switch (purchase)
        {
            case CreditStore.PurchaseOutcome.Created created: response = created.Response; break;
            case CreditStore.PurchaseOutcome.Replayed replayed: response = replayed.Response; break;
            case CreditStore.PurchaseOutcome.Refused refused:
                await ReleaseAsync(c, merchantId, session, reference, ct);
                return new CompleteOutcome.PurchaseRefused(refused.Problem);
            default: throw new InvalidOperationException("unexpected purchase outcome");
        }
        var transactionId = JsonDocument.Parse(response).RootElement.GetProperty("transaction_id").GetString();
        var completed = await c.QuerySingleOrDefaultAsync<CheckoutSessionRow>(new CommandDefinition(MarkCompleted, new
        {
            MerchantId = merchantId, Id = session.CheckoutSessionId, Now = now.UtcDateTime, Reference = reference, session.CustomerId,
            SubscriptionId = (string?)null, TransactionId = transactionId,
        }, cancellationToken: ct));
        if (completed is not null) return new CompleteOutcome.Completed(completed);
        // A retry with the same reference finished it meanwhile.
        var finished = await c.QuerySingleAsync<CheckoutSessionRow>(new CommandDefinition(Select,
            new { MerchantId = merchantId, Id = session.CheckoutSessionId }, cancellationToken: ct));
        return new CompleteOutcome.Replayed(finished);
    }

    private static Task ReleaseAsync(NpgsqlConnection c, string merchantId, CheckoutSessionRow session, string reference, CancellationToken ct) =>
        c.ExecuteAsync(new CommandDefinition(ReleaseReference,
            new { MerchantId = merchantId, Id = session.CheckoutSessionId, Reference = reference }, cancellationToken: ct));
}
