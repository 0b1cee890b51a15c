using Lava.Billing.Pricing;

namespace Lava.Billing.Tests.Pricing;

public class PriceCalculatorExampleTests
{
    private static MeterPrice Meter(RateType rateType, TierType tierType, params (decimal Start, decimal Rate)[] tiers) =>
        new(rateType, tierType, tiers.Select(t => new Tier(t.Start, t.Rate)).ToList());

    private static readonly MeterPrice GraduatedTokens =
        Meter(RateType.Fixed, TierType.Tokens1M, (0m, 5m), (1_000_000m, 3m), (10_000_000m, 1m));

    [Fact]
    public void FiveMillionTokensAcrossTwoTiersCostSeventeen()
    {
        var charge = PriceCalculator.Price(GraduatedTokens, 5_000_000m, 0m, null);

        Assert.Equal(17m, charge.Amount);
        Assert.Equal(
            [new TierLine(0m, 5m, 1_000_000m, 5m), new TierLine(1_000_000m, 3m, 4_000_000m, 12m)],
            charge.Lines);
    }

    [Fact]
    public void FurtherSixMillionTokensInTheSamePeriodCostSixteen()
    {
        var charge = PriceCalculator.Price(GraduatedTokens, 6_000_000m, 5_000_000m, null);

        Assert.Equal(16m, charge.Amount);
        Assert.Equal(
            [new TierLine(1_000_000m, 3m, 5_000_000m, 15m), new TierLine(10_000_000m, 1m, 1_000_000m, 1m)],
            charge.Lines);
    }

    [Fact]
    public void UsageWhollyInsideALaterTierIsPricedOnlyThere()
    {
        var charge = PriceCalculator.Price(GraduatedTokens, 500_000m, 20_000_000m, null);

        Assert.Equal([new TierLine(10_000_000m, 1m, 500_000m, 0.5m)], charge.Lines);
    }

    [Fact]
    public void EightHundredThousandCharactersAcrossTwoTiersCostOnePointThree()
    {
        var meter = Meter(RateType.Fixed, TierType.Characters1M, (0m, 2m), (500_000m, 1m));

        var charge = PriceCalculator.Price(meter, 800_000m, 0m, null);

        Assert.Equal(1.3m, charge.Amount);
        Assert.Equal([1m, 0.3m], charge.Lines.Select(l => l.Amount));
    }

    [Fact]
    public void NinetyPointFiveSecondsAtTwoHundredthsPerMinuteRoundsToTenPlaces()
    {
        var meter = Meter(RateType.Fixed, TierType.Minutes, (0m, 0.02m));

        var charge = PriceCalculator.Price(meter, 90.5m, 0m, null);

        // 90.5 * 0.02 / 60 = 0.0301666...
        Assert.Equal(0.0301666667m, charge.Amount);
        Assert.Equal(90.5m, Assert.Single(charge.Lines).Quantity);
    }

    [Fact]
    public void MinuteTierStartsAreMinutesWhileLineQuantitiesAreSeconds()
    {
        var meter = Meter(RateType.Fixed, TierType.Minutes, (0m, 0.02m), (1m, 0.01m));

        var charge = PriceCalculator.Price(meter, 90.5m, 0m, null);

        // 60 s at 0.02/min = 0.02; 30.5 s at 0.01/min = 0.00508333...
        Assert.Equal(
            [new TierLine(0m, 0.02m, 60m, 0.02m), new TierLine(1m, 0.01m, 30.5m, 0.0050833333m)],
            charge.Lines);
        Assert.Equal(0.0250833333m, charge.Amount);
    }

    [Fact]
    public void EachRequestIsPricedAtTheTierOfItsPosition()
    {
        var meter = Meter(RateType.Fixed, TierType.Requests, (0m, 0.5m), (2m, 0.25m));

        var second = PriceCalculator.Price(meter, 1m, 1m, null);
        var third = PriceCalculator.Price(meter, 1m, 2m, null);

        Assert.Equal([new TierLine(0m, 0.5m, 1m, 0.5m)], second.Lines);
        Assert.Equal([new TierLine(2m, 0.25m, 1m, 0.25m)], third.Lines);
    }

    [Fact]
    public void PercentageSplitsTheProviderCostAcrossTiersByUnits()
    {
        var meter = Meter(RateType.Percentage, TierType.Tokens1M, (0m, 20m), (1_000_000m, 10m));

        var charge = PriceCalculator.Price(meter, 1_000_000m, 500_000m, 3m);

        // Half the units (and so half the cost) in each tier: 1.5 * 20% + 1.5 * 10%.
        Assert.Equal(
            [new TierLine(0m, 20m, 500_000m, 0.3m), new TierLine(1_000_000m, 10m, 500_000m, 0.15m)],
            charge.Lines);
        Assert.Equal(0.45m, charge.Amount);
    }

    [Fact]
    public void PercentageRoundsEachLineSoThirdsAddUpToTheSumOfRoundedLines()
    {
        var meter = Meter(RateType.Percentage, TierType.Tokens1M, (0m, 20m), (1_000_000m, 10m));

        var charge = PriceCalculator.Price(meter, 3_000_000m, 0m, 1m);

        // 1/3 * 20% and 2/3 * 10% are both 0.0666...; each rounds up on its own.
        Assert.Equal([0.0666666667m, 0.0666666667m], charge.Lines.Select(l => l.Amount));
        Assert.Equal(0.1333333334m, charge.Amount);
    }

    [Theory]
    [InlineData("0.00005", "0.0000000001")] // exactly 0.00000000005
    [InlineData("0.00025", "0.0000000003")] // exactly 0.00000000025: away from zero, not to even
    [InlineData("0.000049999", "0")]
    public void LineAmountsRoundHalfAwayFromZeroAtTenPlaces(string ratePerMillion, string expected)
    {
        var meter = Meter(RateType.Fixed, TierType.Tokens1M, (0m, decimal.Parse(ratePerMillion)));

        var charge = PriceCalculator.Price(meter, 1m, 0m, null);

        Assert.Equal(decimal.Parse(expected), Assert.Single(charge.Lines).Amount);
    }

    [Fact]
    public void FixedRateWithZeroQuantityHasNoLinesAndCostsNothing()
    {
        var charge = PriceCalculator.Price(GraduatedTokens, 0m, 5_000_000m, 123m);

        Assert.Equal(0m, charge.Amount);
        Assert.Empty(charge.Lines);
    }

    [Fact]
    public void PercentageWithZeroQuantityPutsTheWholeCostInTheTierAtUsedBefore()
    {
        var meter = Meter(RateType.Percentage, TierType.Tokens1M, (0m, 20m), (1_000_000m, 10m));

        var charge = PriceCalculator.Price(meter, 0m, 1_000_000m, 2.5m);

        Assert.Equal([new TierLine(1_000_000m, 10m, 0m, 0.25m)], charge.Lines);
        Assert.Equal(0.25m, charge.Amount);
    }

    [Fact]
    public void PercentageWithoutAProviderCostIsRejected()
    {
        var meter = Meter(RateType.Percentage, TierType.Requests, (0m, 20m));

        Assert.Throws<ArgumentException>(() => PriceCalculator.Price(meter, 1m, 0m, null));
    }

    [Fact]
    public void NegativeInputsAndInvalidTiersAreRejected()
    {
        var percentage = Meter(RateType.Percentage, TierType.Tokens1M, (0m, 20m));

        Assert.Throws<ArgumentOutOfRangeException>(() => PriceCalculator.Price(GraduatedTokens, -1m, 0m, null));
        Assert.Throws<ArgumentOutOfRangeException>(() => PriceCalculator.Price(GraduatedTokens, 1m, -1m, null));
        Assert.Throws<ArgumentOutOfRangeException>(() => PriceCalculator.Price(percentage, 1m, 0m, -1m));
        Assert.Throws<ArgumentException>(() =>
            PriceCalculator.Price(Meter(RateType.Fixed, TierType.Tokens1M, (5m, 1m)), 1m, 0m, null));
    }

    [Fact]
    public void BaseQuantityAddsInputAndOutputInBaseUnits()
    {
        var usage = new Usage(3, 4, 10, 20, 1.25m, 0.000001m);

        Assert.Equal(7m, PriceCalculator.BaseQuantity(TierType.Tokens1M, usage));
        Assert.Equal(30m, PriceCalculator.BaseQuantity(TierType.Characters1M, usage));
        Assert.Equal(1.250001m, PriceCalculator.BaseQuantity(TierType.Minutes, usage));
        Assert.Equal(1m, PriceCalculator.BaseQuantity(TierType.Requests, usage));
        Assert.Equal(2m * long.MaxValue,
            PriceCalculator.BaseQuantity(TierType.Tokens1M, new Usage(long.MaxValue, long.MaxValue, 0, 0, 0m, 0m)));
    }

    [Theory]
    [InlineData(RateType.Fixed, "fixed")]
    [InlineData(RateType.Percentage, "percentage")]
    public void RateTypeNamesRoundTrip(RateType type, string name)
    {
        Assert.Equal(name, PriceCalculator.RateTypeName(type));
        Assert.True(PriceCalculator.TryParseRateType(name, out var parsed));
        Assert.Equal(type, parsed);
    }

    [Theory]
    [InlineData(TierType.Tokens1M, "tokens_1m")]
    [InlineData(TierType.Characters1M, "characters_1m")]
    [InlineData(TierType.Minutes, "minutes")]
    [InlineData(TierType.Requests, "requests")]
    public void TierTypeNamesRoundTrip(TierType type, string name)
    {
        Assert.Equal(name, PriceCalculator.TierTypeName(type));
        Assert.True(PriceCalculator.TryParseTierType(name, out var parsed));
        Assert.Equal(type, parsed);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("Fixed")]
    [InlineData("Tokens1M")]
    [InlineData(" minutes")]
    public void NonCanonicalNamesDoNotParse(string? name)
    {
        Assert.False(PriceCalculator.TryParseRateType(name, out _));
        Assert.False(PriceCalculator.TryParseTierType(name, out _));
    }
}
