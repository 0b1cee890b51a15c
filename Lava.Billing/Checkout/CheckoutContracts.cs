using System.Text.Json.Serialization;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;

namespace Lava.Billing.Checkout;

public static class CheckoutModes
{
    public const string Subscription = "subscription";
    public const string CreditBundle = "credit_bundle";
}

/// <summary>The SDK's <c>checkoutSessions.create</c> body.</summary>
public sealed record CreateCheckoutSessionParams(string? CheckoutMode, string? OriginUrl, string? CustomerId, string? PlanId, string? CreditBundleId);

/// <summary>The merchant's payment integration reports the payment that paid for a session.</summary>
public sealed record CompleteCheckoutSessionParams
{
    /// <summary>The payment's id in the merchant's payment system; a session is completed by one payment only.</summary>
    public string? PaymentReference { get; init; }

    /// <summary>What was paid, checked against the session's amount when given.</summary>
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? Amount { get; init; }
}

/// <summary>
/// The SDK's <c>RestCheckoutSession</c>, plus what a self-hosted checkout needs: the amount to take, status, expiry,
/// the payment that completed it and what it bought, and the test page's address for a test-mode session. The token
/// (and the test page's address, which holds it) is in the creating answer only: the service keeps its hash alone.
/// </summary>
public sealed record RestCheckoutSession(
    string CheckoutSessionId, string? CheckoutSessionToken, string CheckoutMode, string OriginUrl, string? CustomerId, string? PlanId,
    string? CreditBundleId, string Amount, string Status, DateTimeOffset ExpiresAt, string? PaymentReference, string? SubscriptionId,
    string? TransactionId, string? CheckoutUrl, DateTimeOffset CreatedAt, DateTimeOffset? CompletedAt)
{
    public static RestCheckoutSession From(CheckoutSessionRow r, DateTimeOffset now, string? token = null, string? checkoutUrl = null) => new(
        r.CheckoutSessionId, token, r.CheckoutMode, r.OriginUrl, r.CustomerId, r.PlanId, r.CreditBundleId, Money.Format(r.Amount),
        r.StatusAt(now), Utc(r.ExpiresAt), r.Status == "completed" ? r.PaymentReference : null, r.SubscriptionId, r.TransactionId,
        r.TestMode ? checkoutUrl : null, Utc(r.CreatedAt), r.CompletedAt is { } c ? Utc(c) : null);

    private static DateTimeOffset Utc(DateTime t) => new(DateTime.SpecifyKind(t, DateTimeKind.Utc));
}
