using Dapper;
using Npgsql;
using Lava.Billing.Pricing;

namespace Lava.Billing.Meters;

/// <summary>A meter's price at one version: what a usage report is priced with and records.</summary>
public sealed record MeterPrice(string MeterId, string MeterSlug, int Version, Pricing.MeterPrice Price);

/// <summary>The reads that price usage: the current price of a live meter, and any past price of any meter.</summary>
public sealed partial class MeterStore
{
    private sealed record PriceRow
    {
        public required string MerchantId { get; init; }
        public required string MeterId { get; init; }
        public required string MeterSlug { get; init; }
        public required string RateType { get; init; }
        public required string TierType { get; init; }
        public required int Version { get; init; }
        public required decimal[] TierStarts { get; init; }
        public required decimal[] TierRates { get; init; }
    }

    private const string SelectLivePrice = """
        SELECT m.merchant_id, m.meter_id, m.meter_slug, m.rate_type, m.tier_type, p.version, p.tier_starts, p.tier_rates
          FROM meters m
          JOIN meter_prices p ON p.merchant_id = m.merchant_id AND p.meter_id = m.meter_id AND p.version = m.current_version
         WHERE m.merchant_id = @MerchantId
           AND m.meter_slug = @MeterSlug
           AND m.deleted_at IS NULL
        """;

    /// <summary>The current price of the live meter with this slug.</summary>
    public async Task<MeterPrice?> FindLivePriceAsync(string merchantId, string meterSlug, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var row = await connection.QuerySingleOrDefaultAsync<PriceRow>(new CommandDefinition(SelectLivePrice,
            new { MerchantId = merchantId, MeterSlug = meterSlug }, cancellationToken: ct));
        return row is null ? null : ToPrice(row);
    }

    private const string SelectLivePrices = """
        SELECT m.merchant_id, m.meter_id, m.meter_slug, m.rate_type, m.tier_type, p.version, p.tier_starts, p.tier_rates
          FROM unnest(@MerchantIds, @MeterSlugs) AS k(merchant_id, meter_slug)
          JOIN meters m ON m.merchant_id = k.merchant_id AND m.meter_slug = k.meter_slug AND m.deleted_at IS NULL
          JOIN meter_prices p ON p.merchant_id = m.merchant_id AND p.meter_id = m.meter_id AND p.version = m.current_version
        """;

    /// <summary>
    /// The current prices of many live meters (of one or several merchants) in one round trip; absent slugs are left out.
    /// Read from <paramref name="on"/>, the pool its caller posts on.
    /// </summary>
    public static async Task<Dictionary<(string MerchantId, string MeterSlug), MeterPrice>> FindLivePricesAsync(
        IReadOnlyCollection<(string MerchantId, string MeterSlug)> keys, NpgsqlDataSource on, CancellationToken ct)
    {
        await using var connection = await on.OpenConnectionAsync(ct);
        var rows = await connection.QueryAsync<PriceRow>(new CommandDefinition(SelectLivePrices, new
        {
            MerchantIds = keys.Select(k => k.MerchantId).ToArray(), MeterSlugs = keys.Select(k => k.MeterSlug).ToArray(),
        }, cancellationToken: ct));
        return rows.ToDictionary(r => (r.MerchantId, r.MeterSlug), ToPrice);
    }

    private const string SelectPrice = """
        SELECT m.merchant_id, m.meter_id, m.meter_slug, m.rate_type, m.tier_type, p.version, p.tier_starts, p.tier_rates
          FROM meters m
          JOIN meter_prices p ON p.merchant_id = m.merchant_id AND p.meter_id = m.meter_id
         WHERE m.merchant_id = @MerchantId
           AND m.meter_id = @MeterId
           AND p.version = @Version
        """;

    /// <summary>Any version of a meter's price, also of a soft-deleted meter (to explain past charges).</summary>
    public async Task<MeterPrice?> FindPriceAsync(string merchantId, string meterId, int version, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var row = await connection.QuerySingleOrDefaultAsync<PriceRow>(new CommandDefinition(SelectPrice,
            new { MerchantId = merchantId, MeterId = meterId, Version = version }, cancellationToken: ct));
        return row is null ? null : ToPrice(row);
    }

    // The table's CHECKs admit only canonical names, so a failed parse means the schema and the code disagree.
    private static MeterPrice ToPrice(PriceRow r)
    {
        if (!PriceCalculator.TryParseRateType(r.RateType, out var rateType) || !PriceCalculator.TryParseTierType(r.TierType, out var tierType))
            throw new InvalidOperationException($"Meter {r.MeterId} has rate_type '{r.RateType}' / tier_type '{r.TierType}' the pricing engine does not know.");
        var tiers = r.TierStarts.Zip(r.TierRates, (start, rate) => new Tier(start, rate)).ToList();
        return new MeterPrice(r.MeterId, r.MeterSlug, r.Version, new Pricing.MeterPrice(rateType, tierType, tiers));
    }
}
