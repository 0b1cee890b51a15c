using FsCheck;
using FsCheck.Fluent;
using Lava.Billing.Pricing;

namespace Lava.Billing.Tests.Pricing;

public class PriceCalculatorPropertyTests
{
    private static readonly Config Runs = Config.QuickThrowOnFailure.WithMaxTest(1000);
    private const decimal HalfUlp = 0.00000000005m;

    [Fact]
    public void SplittingAReportOnlyChangesTheTotalByPerLineRounding()
    {
        var tierTypes = Gen.Elements(TierType.Tokens1M, TierType.Characters1M, TierType.Minutes);
        var cases =
            from tierType in tierTypes
            from tiers in PricingGen.Tiers(tierType)
            from usedBefore in PricingGen.Quantity(tierType)
            from count in Gen.Choose(1, 8)
            from parts in Gen.ArrayOf(PricingGen.Quantity(tierType), count)
            select new SplitCase(new MeterPrice(RateType.Fixed, tierType, tiers), usedBefore, parts);

        Prop.ForAll(cases.ToArbitrary(), c =>
        {
            var whole = PriceCalculator.Price(c.Price, c.Parts.Sum(), c.UsedBefore, null);
            var pieces = new List<Charge>();
            var used = c.UsedBefore;
            foreach (var part in c.Parts)
            {
                pieces.Add(PriceCalculator.Price(c.Price, part, used, null));
                used += part;
            }
            var lineCount = whole.Lines.Count + pieces.Sum(p => p.Lines.Count);
            return Math.Abs(whole.Amount - pieces.Sum(p => p.Amount)) <= lineCount * HalfUlp;
        }).Check(Runs);
    }

    [Fact]
    public void ChargeIsNeverNegative() =>
        Prop.ForAll(PricingGen.Cases().ToArbitrary(), c =>
        {
            var charge = c.Charge();
            return charge.Amount >= 0m && charge.Lines.All(l => l.Amount >= 0m);
        }).Check(Runs);

    [Fact]
    public void ChargeIsTheExactSumOfItsLines() =>
        Prop.ForAll(PricingGen.Cases().ToArbitrary(), c =>
        {
            var charge = c.Charge();
            return charge.Amount == charge.Lines.Sum(l => l.Amount);
        }).Check(Runs);

    [Fact]
    public void EveryLineAmountHasAtMostTenDecimalPlaces() =>
        Prop.ForAll(PricingGen.Cases().ToArbitrary(), c =>
            c.Charge().Lines.All(l => l.Amount.Scale <= 10)).Check(Runs);

    [Fact]
    public void LineQuantitiesAddUpToTheBaseQuantityInAscendingTierOrder() =>
        Prop.ForAll(PricingGen.Cases().ToArbitrary(), c =>
        {
            var lines = c.Charge().Lines;
            var ascending = lines.Zip(lines.Skip(1)).All(p => p.First.TierStart < p.Second.TierStart);
            var zeroUnitLinesOnlyForEmptyPercentage = lines.All(l => l.Quantity > 0m || c.BaseQuantity == 0m);
            return lines.Sum(l => l.Quantity) == c.BaseQuantity && ascending && zeroUnitLinesOnlyForEmptyPercentage;
        }).Check(Runs);

    private sealed record SplitCase(MeterPrice Price, decimal UsedBefore, IReadOnlyList<decimal> Parts)
    {
        public override string ToString() =>
            $"{PricingGen.Describe(Price)} usedBefore={UsedBefore} parts=[{string.Join(", ", Parts)}]";
    }
}
