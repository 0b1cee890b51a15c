using Lava.Billing.Pricing;

namespace Lava.Billing.Forward;

/// <summary>
/// The most a gateway call could be charged, held before the provider is called. Priced at the meter's highest tier
/// rate, so it bounds the charge wherever in its tiers the customer is.
/// </summary>
public static class ForwardWorstCase
{
    public static decimal Charge(MeterPrice meter, UsageEstimate estimate, ModelPrice? modelPrice, long defaultMaxOutputTokens, decimal defaultSeconds)
    {
        var output = estimate.MaxOutputTokens ?? defaultMaxOutputTokens;
        var worstUsage = estimate.Input with { Output = Math.Max(estimate.Input.Output, output) };
        var quantity = meter.TierType switch
        {
            TierType.Tokens1M => (decimal)worstUsage.InputTokens + worstUsage.Output,
            TierType.Characters1M => worstUsage.InputCharacters,
            TierType.Minutes => worstUsage.InputSeconds > 0 ? worstUsage.InputSeconds : defaultSeconds,
            _ => 1m,
        };
        var flat = meter with { Tiers = [new Tier(0, meter.Tiers.Max(t => t.Rate))] };
        var cost = meter.RateType == RateType.Percentage
            ? modelPrice is null ? 0 : ProviderCost.Compute(worstUsage, modelPrice)
            : (decimal?)null;
        return PriceCalculator.Price(flat, quantity, 0, cost).Amount;
    }
}
