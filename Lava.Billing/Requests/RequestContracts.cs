using System.Text.Json.Serialization;
using Lava.Billing.Infrastructure.Http;

namespace Lava.Billing.Requests;

/// <summary>SDK <c>CreateRequestParams</c> plus our <c>cost</c> and <c>timestamp</c>.</summary>
public sealed record CreateRequestBody
{
    public string? RequestId { get; init; }
    public string? CustomerId { get; init; }
    /// <summary>Older SDKs' name for customer_id.</summary>
    public string? ConnectionId { get; init; }
    public string? MeterSlug { get; init; }
    public Dictionary<string, string>? Metadata { get; init; }
    public long? InputTokens { get; init; }
    public long? OutputTokens { get; init; }
    public long? InputCharacters { get; init; }
    public long? OutputCharacters { get; init; }
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? InputSeconds { get; init; }
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? OutputSeconds { get; init; }
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? Cost { get; init; }
    public DateTimeOffset? Timestamp { get; init; }
    /// <summary>Record the usage against the customer without charging (entitlement is still enforced).</summary>
    public bool? DisableBilling { get; init; }
    /// <summary>A hold this report captures (POST /v1/holds).</summary>
    public string? HoldId { get; init; }

    [JsonIgnore] public string? Customer => CustomerId ?? ConnectionId;

    /// <summary>Where the work ran, set by the gateway (never read from a client's body).</summary>
    [JsonIgnore] public ReportSource? Source { get; init; }
}

/// <summary>The provider call behind a gateway report: RestRequest's provider, provider_key_type, model and endpoint.</summary>
public sealed record ReportSource(string Provider, string ProviderKeyType, string? Model, string Endpoint)
{
    /// <summary>What a report posted to <c>POST /v1/requests</c> says: the merchant ran the work itself.</summary>
    public static readonly ReportSource Reported = new("custom", "unmanaged", null, "/v1/requests");
}

public sealed record ModelUsage(
    long InputTokens, long OutputTokens, long TotalTokens,
    long InputCharacters, long OutputCharacters, long TotalCharacters,
    decimal InputSeconds, decimal OutputSeconds, decimal TotalSeconds,
    string InputCost, string OutputCost, string TotalCost);

public sealed record BreakdownTier(decimal Start, string Rate, string Type);

/// <summary>One tier line, exactly the SDK's shape: the units that fell in the tier under their own name.</summary>
public sealed record BreakdownLine(BreakdownTier Tier, decimal Tokens, decimal Characters, decimal Seconds, string Cost);

public sealed record RequestCharge(string Amount, string RateType, IReadOnlyList<BreakdownLine> Breakdown);

/// <summary>The customer's position right after this report (our addition): what credits remain and what is owed.</summary>
public sealed record CustomerBalance(string CreditsRemaining, string Receivable);

/// <summary>SDK <c>RestRequest</c>, plus <c>mode</c>, <c>price_version</c>, <c>transaction_id</c> and <c>customer_balance</c>.</summary>
public sealed record RestRequest(
    string RequestId,
    string Status,
    string? CustomerId,
    string MeterId,
    string Provider,
    string ProviderKeyType,
    string? Model,
    string Endpoint,
    ModelUsage ModelUsage,
    string Cost,
    RequestCharge Charge,
    IReadOnlyDictionary<string, string> Metadata,
    DateTimeOffset Timestamp,
    DateTimeOffset CreatedAt,
    string Mode,
    int PriceVersion,
    string TransactionId,
    CustomerBalance? CustomerBalance,
    string? HoldId);
