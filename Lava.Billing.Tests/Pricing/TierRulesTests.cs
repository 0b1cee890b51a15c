using Lava.Billing.Pricing;

namespace Lava.Billing.Tests.Pricing;

public class TierRulesTests
{
    private static List<Tier> Tiers(params (decimal Start, decimal Rate)[] tiers) =>
        tiers.Select(t => new Tier(t.Start, t.Rate)).ToList();

    public static TheoryData<string, List<Tier>> ValidTiers => new()
    {
        { "single free tier", Tiers((0m, 0m)) },
        { "graduated", Tiers((0m, 5m), (1_000_000m, 3m), (10_000_000m, 1m)) },
        { "limits", Tiers((0m, 1_000_000_000m), (0.0000000001m, 0.0000000001m), (1_000_000_000_000_000m, 0m)) },
        { "trailing zeros beyond ten places", Tiers((0.00000000000m, 1.50000000000000m)) },
        { "hundred tiers", Enumerable.Range(0, 100).Select(i => new Tier(i, 1m)).ToList() },
    };

    [Theory]
    [MemberData(nameof(ValidTiers))]
    public void ValidTiersHaveNoMessages(string why, List<Tier> tiers)
    {
        Assert.True(TierRules.Validate(tiers).Count == 0, why);
    }

    public static TheoryData<string, List<Tier>> SingleViolations => new()
    {
        { "at least one tier", [] },
        { "at most 100 tiers", Enumerable.Range(0, 101).Select(i => new Tier(i, 1m)).ToList() },
        { "tiers[0].start must be 0", Tiers((1m, 1m)) },
        { "tiers[2].start (5) must be greater than tiers[1].start (5)", Tiers((0m, 1m), (5m, 1m), (5m, 1m)) },
        { "tiers[1].rate must be >= 0", Tiers((0m, 1m), (5m, -0.1m)) },
        { "tiers[0].rate must have at most 10 decimal places", Tiers((0m, 0.00000000001m)) },
        { "tiers[1].start must have at most 10 decimal places", Tiers((0m, 1m), (0.00000000001m, 1m)) },
        { "tiers[0].rate must be <= 1000000000", Tiers((0m, 1_000_000_000.0000000001m)) },
        { "tiers[1].start must be <= 1000000000000000", Tiers((0m, 1m), (1_000_000_000_000_000.0000000001m, 1m)) },
    };

    [Theory]
    [MemberData(nameof(SingleViolations))]
    public void EachRuleViolatedAloneGivesExactlyItsMessage(string expected, List<Tier> tiers)
    {
        var message = Assert.Single(TierRules.Validate(tiers));
        Assert.StartsWith(expected, message);
    }

    [Fact]
    public void NegativeStartIsReportedAlongsideTheOrderingItBreaks()
    {
        // A negative start cannot occur alone: the first start must be 0 and later ones ascend.
        var first = TierRules.Validate(Tiers((-1m, 1m)));
        var later = TierRules.Validate(Tiers((0m, 1m), (-1m, 1m)));

        Assert.Contains(first, m => m.StartsWith("tiers[0].start must be >= 0"));
        Assert.Contains(first, m => m.StartsWith("tiers[0].start must be 0"));
        Assert.Contains(later, m => m.StartsWith("tiers[1].start must be >= 0"));
        Assert.Contains(later, m => m.StartsWith("tiers[1].start (-1) must be greater than"));
    }

    [Fact]
    public void NullListAndNullTierAreReportedInsteadOfThrowing()
    {
        Assert.Single(TierRules.Validate(null!));
        Assert.Equal(["tiers[1] is missing"], TierRules.Validate([new Tier(0m, 1m), null!]));
    }

    [Fact]
    public void AllProblemsAreReportedTogether()
    {
        var messages = TierRules.Validate(Tiers((2m, -1m), (1m, 0.00000000001m)));

        Assert.Equal(4, messages.Count);
    }
}
