using FsCheck;
using FsCheck.Fluent;
using Lava.Billing.Pricing;

namespace Lava.Billing.Tests.Pricing;

public sealed record PriceCase(MeterPrice Price, decimal BaseQuantity, decimal UsedBefore, decimal? Cost)
{
    public Charge Charge() => PriceCalculator.Price(Price, BaseQuantity, UsedBefore, Cost);

    public override string ToString() =>
        $"{PricingGen.Describe(Price)} quantity={BaseQuantity} usedBefore={UsedBefore} cost={Cost}";
}

// Generators build money from integers and a scale, never from floating point, so every value is
// exactly the decimal it claims to be.
public static class PricingGen
{
    public static decimal Scaled(long units, int decimalPlaces) =>
        new((int)(units & 0xFFFFFFFF), (int)(units >> 32), 0, isNegative: false, (byte)decimalPlaces);

    private static Gen<int> Places(int max) => Gen.Choose(0, max);

    // Up to the 1e9 cap with 0-10 places (tiny rates round away, big ones stress precision); 1 in 10 is free.
    public static Gen<decimal> Rate() =>
        from digits in Gen.Choose(0, 1_000_000_000)
        from places in Places(10)
        from zero in Gen.Choose(0, 9)
        select zero == 0 ? 0m : Scaled(digits, places);

    public static Gen<decimal> Cost() =>
        from digits in Gen.Choose(0, int.MaxValue)
        from places in Places(10)
        select Scaled(digits, places);

    // Base units: whole tokens/characters/requests, seconds with up to 6 places.
    public static Gen<decimal> Quantity(TierType tierType) => tierType switch
    {
        TierType.Minutes =>
            from seconds in Gen.Choose(0, 100_000)
            from micros in Gen.Choose(0, 999_999)
            from places in Places(6)
            select decimal.Round(Scaled(seconds * 1_000_000L + micros, 6), places, MidpointRounding.AwayFromZero),
        TierType.Requests => Gen.Choose(0, 3).Select(n => (decimal)n),
        _ => Gen.Choose(0, 4_000_000).Select(n => (decimal)n),
    };

    // Tier starts are in the meter's unit; gaps are sized so typical quantities cross several tiers.
    public static Gen<IReadOnlyList<Tier>> Tiers(TierType tierType)
    {
        var gap = tierType switch
        {
            TierType.Minutes => from hundredths in Gen.Choose(1, 100_000) select Scaled(hundredths, 2),
            TierType.Requests => Gen.Choose(1, 3).Select(n => (decimal)n),
            _ => from n in Gen.Choose(1, 3_000_000) from places in Places(3) select Scaled(n, places),
        };
        return
            from count in Gen.Choose(1, 6)
            from gaps in Gen.ArrayOf(gap, count - 1)
            from rates in Gen.ArrayOf(Rate(), count)
            select (IReadOnlyList<Tier>)rates
                .Select((rate, i) => new Tier(gaps.Take(i).Sum(), rate))
                .ToList();
    }

    public static Gen<PriceCase> Cases() =>
        from rateType in Gen.Elements(RateType.Fixed, RateType.Percentage)
        from tierType in Gen.Elements(Enum.GetValues<TierType>())
        from tiers in Tiers(tierType)
        from quantity in Quantity(tierType)
        from usedBefore in Quantity(tierType)
        from cost in Cost()
        select new PriceCase(
            new MeterPrice(rateType, tierType, tiers), quantity, usedBefore,
            rateType == RateType.Percentage ? cost : null);

    public static string Describe(MeterPrice price) =>
        $"{price.RateType}/{price.TierType} tiers=[{string.Join(", ", price.Tiers.Select(t => $"{t.Start}->{t.Rate}"))}]";
}
