using Dapper;
using Lava.Billing.Pricing;
using Npgsql;

namespace Lava.Billing.Meters;

// Placeholder until the meters branch lands: only what usage reports need.
public sealed record MeterPrice(string MeterId, string MeterSlug, int Version, Lava.Billing.Pricing.MeterPrice Price);

public sealed class MeterStore(NpgsqlDataSource db)
{
    private const string SelectLiveBySlug = """
        SELECT m.meter_id, m.meter_slug, p.version, m.rate_type, m.tier_type, p.tier_starts, p.tier_rates
          FROM meters m
          JOIN meter_prices p ON p.merchant_id = m.merchant_id AND p.meter_id = m.meter_id AND p.version = m.current_version
         WHERE m.merchant_id = @MerchantId AND m.meter_slug = @Slug AND m.deleted_at IS NULL
        """;

    public async Task<MeterPrice?> FindLivePriceAsync(string merchantId, string meterSlug, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var row = await connection.QuerySingleOrDefaultAsync<(string MeterId, string MeterSlug, int Version, string RateType, string TierType, decimal[] TierStarts, decimal[] TierRates)?>(
            new CommandDefinition(SelectLiveBySlug, new { MerchantId = merchantId, Slug = meterSlug }, cancellationToken: ct));
        if (row is not { } r) return null;
        PriceCalculator.TryParseRateType(r.RateType, out var rateType);
        PriceCalculator.TryParseTierType(r.TierType, out var tierType);
        var tiers = r.TierStarts.Zip(r.TierRates, (s, rate) => new Tier(s, rate)).ToList();
        return new MeterPrice(r.MeterId, r.MeterSlug, r.Version, new Lava.Billing.Pricing.MeterPrice(rateType, tierType, tiers));
    }
}
