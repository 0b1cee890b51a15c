using System.Text.Json;
using System.Text.Json.Serialization;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Pricing;

namespace Lava.Billing.Meters;

/// <summary>One tier as sent: the SDK sends start and rate as strings; plain JSON numbers are accepted too.</summary>
public sealed record TierParams(
    [property: JsonConverter(typeof(StringOrNumberDecimalConverter))] decimal? Start,
    [property: JsonConverter(typeof(StringOrNumberDecimalConverter))] decimal? Rate);

public sealed record CreateMeterParams(
    string? Name, string? MeterSlug, string? RateType, string? TierType, IReadOnlyList<TierParams?>? Tiers);

/// <summary>
/// Name and tiers may change. meter_slug, rate_type and tier_type are bound only to refuse a change to them (400):
/// a client that sends back the meter it read, unchanged, is not refused.
/// </summary>
public sealed record UpdateMeterParams(
    string? Name, IReadOnlyList<TierParams?>? Tiers, JsonElement? MeterSlug, JsonElement? RateType, JsonElement? TierType);

public sealed record RestMeterTier(decimal Start, string Rate, string Type);

/// <summary>The SDK's RestMeter plus tier_type, price_version and updated_at.</summary>
public sealed record RestMeter(
    string MeterId, string MeterSlug, string Name, string RateType, string TierType,
    IReadOnlyList<RestMeterTier> Tiers, int PriceVersion, DateTime CreatedAt, DateTime UpdatedAt)
{
    public static RestMeter From(MeterRow m) => new(
        m.MeterId, m.MeterSlug, m.Name, m.RateType, m.TierType,
        m.Tiers.Select(t => new RestMeterTier(Normalize(t.Start), Money.Format(t.Rate), m.TierType)).ToList(),
        m.PriceVersion, m.CreatedAt, m.UpdatedAt);

    // numeric keeps the scale it was written with; 1000000.00 reads better as 1000000.
    private static decimal Normalize(decimal value) => value / 1.0000000000000000000000000000m;
}

public static class TierParamsExtensions
{
    /// <summary>The tiers as the pricing engine sees them; call only on tiers the validator accepted.</summary>
    public static IReadOnlyList<Tier> ToTiers(this IReadOnlyList<TierParams?> tiers) =>
        tiers.Select(t => new Tier(t!.Start!.Value, t.Rate!.Value)).ToList();
}
