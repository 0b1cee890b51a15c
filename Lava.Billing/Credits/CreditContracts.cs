using System.Text.Json.Serialization;
using Lava.Billing.Infrastructure.Http;

namespace Lava.Billing.Credits;

public sealed record CustomerBalanceResponse(
    string CustomerId, string CycleRemaining, string BundleRemaining, string CreditsRemaining, string CreditLimit,
    string Receivable, string Held, string Available);

public sealed record CreateHoldBody
{
    public string? CustomerId { get; init; }
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? Amount { get; init; }
    /// <summary>The meter the work is for: with an active plan, only a meter on the plan may count plan credits.</summary>
    public string? MeterSlug { get; init; }
    /// <summary>Seconds until the hold lapses on its own (default 600).</summary>
    public int? ExpiresIn { get; init; }
}

public sealed record HoldResponse(
    string HoldId, string CustomerId, string Amount, string Status, DateTimeOffset ExpiresAt, string? CapturedAmount,
    string? RequestId, DateTimeOffset CreatedAt);

public sealed record PurchaseBundleBody(string? CustomerId);

public sealed record PurchaseResponse(
    string PurchaseId, string CreditBundleId, string CustomerId, string Cost, string CreditAmount, string TransactionId,
    string BundleRemaining, DateTimeOffset CreatedAt);
