using Lava.Billing.Pricing;

namespace Lava.Billing.Tests.Pricing;

// Inputs at the limits the service enforces (quantity 1e15, usedBefore 1e18, rate 1e9 and cost
// 1e12 with 10 places). Expected values come from an exact rational reference computed offline.
public class PriceCalculatorBoundsTests
{
    private const decimal MaxRate = 999_999_999.9999999999m;
    private const decimal MaxCost = 999_999_999_999.9999999999m;

    [Fact]
    public void LargestTokenReportAtTheLargestRateIsExact()
    {
        var meter = new MeterPrice(RateType.Fixed, TierType.Tokens1M,
            [new Tier(0m, MaxRate), new Tier(999_999_999_999_999.9999999999m, 0.0000000001m)]);

        var charge = PriceCalculator.Price(meter, 1_000_000_000_000_000m, 0m, null);

        Assert.Equal([999_999_999_999_999_999.8999999m, 0m], charge.Lines.Select(l => l.Amount));
        Assert.Equal(999_999_999_999_999_999.8999999m, charge.Amount);
    }

    [Fact]
    public void LargestUsedBeforeStillFindsTheLastTier()
    {
        var meter = new MeterPrice(RateType.Fixed, TierType.Tokens1M,
            [new Tier(0m, 1m), new Tier(999_999_999_999_999.9999999999m, MaxRate)]);

        var charge = PriceCalculator.Price(meter, 1_000_000_000_000_000m, 1_000_000_000_000_000_000m, null);

        var line = Assert.Single(charge.Lines);
        Assert.Equal(999_999_999_999_999.9999999999m, line.TierStart);
        Assert.Equal(999_999_999_999_999_999.9m, line.Amount);
    }

    [Fact]
    public void LargestMinuteReportKeepsAsManyPlacesAsDecimalHolds()
    {
        var meter = new MeterPrice(RateType.Fixed, TierType.Minutes, [new Tier(0m, MaxRate)]);

        var charge = PriceCalculator.Price(meter, 999_999_999_999.999999m, 0m, null);

        // ~1.67e19 needs 30 digits at 10 places; decimal holds 29, so this one keeps 9.
        Assert.Equal(16_666_666_666_666_666_648.333333333m, charge.Amount);
    }

    [Fact]
    public void LargestPercentageChargeAcrossTiersIsExact()
    {
        var meter = new MeterPrice(RateType.Percentage, TierType.Tokens1M,
            [new Tier(0m, MaxRate), new Tier(333_333_333_333_333.3333333333m, 0.0000000001m)]);

        var charge = PriceCalculator.Price(meter, 1_000_000_000_000_000m, 0m, MaxCost);

        Assert.Equal([3_333_333_333_333_333_332.9996663333m, 0.6666666667m], charge.Lines.Select(l => l.Amount));
        Assert.Equal(3_333_333_333_333_333_333.666333m, charge.Amount);
    }

    [Fact]
    public void PercentageOfTheLargestCostAtTheLargestRateDoesNotOverflow()
    {
        var meter = new MeterPrice(RateType.Percentage, TierType.Characters1M, [new Tier(0m, 1_000_000_000m)]);

        var spread = PriceCalculator.Price(meter, 1_000_000_000_000_000m, 1_000_000_000_000_000_000m, 1_000_000_000_000m);
        var empty = PriceCalculator.Price(meter, 0m, 1_000_000_000_000_000_000m, 1_000_000_000_000m);

        Assert.Equal(10_000_000_000_000_000_000m, spread.Amount);
        Assert.Equal(10_000_000_000_000_000_000m, empty.Amount);
    }

    [Fact]
    public void PercentageWithUnevenTiersAtTheLargestCostIsExact()
    {
        var meter = new MeterPrice(RateType.Percentage, TierType.Tokens1M,
            [new Tier(0m, 7.7777777777m), new Tier(333_333_333_333_333.3333333333m, 1.2345678901m)]);

        var charge = PriceCalculator.Price(meter, 1_000_000_000_000_000m, 0m, MaxCost);

        Assert.Equal([25_925_925_925.6666666667m, 8_230_452_600.6666666667m], charge.Lines.Select(l => l.Amount));
        Assert.Equal(34_156_378_526.3333333334m, charge.Amount);
    }
}
