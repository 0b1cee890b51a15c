using System.Text.Json.Serialization;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;

namespace Lava.Billing.SpendKeys;

public static class SpendKeyStatus
{
    public const string Active = "active";
    public const string Paused = "paused";
}

public static class RequestShapes
{
    public const string OpenAi = "openai";
    public const string Anthropic = "anthropic";
}

public sealed record SpendLimitParams
{
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? Amount { get; init; }
    public string? Cycle { get; init; }
}

public sealed record RequestLimitParams(long? Count, string? Cycle);

public sealed record RateLimitParams(int? Rpm, int? Burst);

/// <summary>The SDK's CreateSpendKeyParams.</summary>
public sealed record CreateSpendKeyParams(
    string? Name, string? Status, string? RequestShape, List<string>? AllowedModels, List<string>? AllowedProviders,
    SpendLimitParams? SpendLimit, RequestLimitParams? RequestLimit, RateLimitParams? RateLimit, DateTimeOffset? ExpiresAt);

/// <summary>The SDK's UpdateSpendKeyParams: an absent member is left as it is, an explicit null clears a nullable one.</summary>
public sealed record UpdateSpendKeyParams(
    Optional<string> Name, Optional<string> Status, Optional<string> RequestShape, Optional<List<string>?> AllowedModels,
    Optional<List<string>?> AllowedProviders, Optional<SpendLimitParams?> SpendLimit, Optional<RequestLimitParams?> RequestLimit,
    Optional<RateLimitParams?> RateLimit, Optional<DateTimeOffset?> ExpiresAt);

public sealed record RestSpendLimit(string Amount, string Cycle);

public sealed record RestRequestLimit(long Count, string Cycle);

public sealed record RestRateLimit(int Rpm, int? Burst);

/// <summary>
/// The SDK's RestSpendKey. <c>wallet_id</c> is the merchant's id: a spend key spends the merchant's own managed
/// provider keys, and this service has no wallet apart from the merchant.
/// </summary>
public record RestSpendKey(
    string SpendKeyId, string KeyPreview, string Name, string Status, string RequestShape, string WalletId,
    IReadOnlyList<string>? AllowedModels, IReadOnlyList<string>? AllowedProviders, RestSpendLimit? SpendLimit,
    string CurrentSpend, string TotalSpend, RestRequestLimit? RequestLimit, long CurrentRequests, long TotalRequests,
    RestRateLimit? RateLimit, DateTime? ExpiresAt, DateTime? LastUsedAt, DateTime CreatedAt)
{
    public static RestSpendKey From(SpendKeyRow r) => new(
        r.SpendKeyId, r.KeyPreview, r.Name, r.Status, r.RequestShape, r.MerchantId, r.AllowedModels, r.AllowedProviders,
        r.SpendLimitAmount is { } a ? new RestSpendLimit(Money.Format(a), r.SpendLimitCycle!) : null,
        Money.Format(r.CurrentSpend), Money.Format(r.TotalSpend),
        r.RequestLimitCount is { } c ? new RestRequestLimit(c, r.RequestLimitCycle!) : null, r.CurrentRequests, r.TotalRequests,
        r.RateLimitRpm is { } rpm ? new RestRateLimit(rpm, r.RateLimitBurst) : null, r.ExpiresAt, r.LastUsedAt, r.CreatedAt);
}

/// <summary>The SDK's RestSpendKeyCreated: the key itself, shown on create and rotate only.</summary>
public sealed record RestSpendKeyCreated(
    string SpendKeyId, string KeyPreview, string Name, string Status, string RequestShape, string WalletId,
    IReadOnlyList<string>? AllowedModels, IReadOnlyList<string>? AllowedProviders, RestSpendLimit? SpendLimit,
    string CurrentSpend, string TotalSpend, RestRequestLimit? RequestLimit, long CurrentRequests, long TotalRequests,
    RestRateLimit? RateLimit, DateTime? ExpiresAt, DateTime? LastUsedAt, DateTime CreatedAt, string Key)
    : RestSpendKey(SpendKeyId, KeyPreview, Name, Status, RequestShape, WalletId, AllowedModels, AllowedProviders, SpendLimit,
        CurrentSpend, TotalSpend, RequestLimit, CurrentRequests, TotalRequests, RateLimit, ExpiresAt, LastUsedAt, CreatedAt)
{
    public static RestSpendKeyCreated From(SpendKeyRow r, string key)
    {
        var k = RestSpendKey.From(r);
        return new(k.SpendKeyId, k.KeyPreview, k.Name, k.Status, k.RequestShape, k.WalletId, k.AllowedModels, k.AllowedProviders,
            k.SpendLimit, k.CurrentSpend, k.TotalSpend, k.RequestLimit, k.CurrentRequests, k.TotalRequests, k.RateLimit,
            k.ExpiresAt, k.LastUsedAt, k.CreatedAt, key);
    }
}

public sealed record SpendKeyRevokedResponse(bool Success);
