namespace Lava.Billing.Pricing;

public static class TierRules
{
    public const int MaxTiers = 100;
    public const int MaxDecimalPlaces = 10;
    public const decimal MaxRate = 1_000_000_000m;
    public const decimal MaxStart = 1_000_000_000_000_000m;

    // Returns every problem at once so an API caller can fix them all in one round trip.
    public static IReadOnlyList<string> Validate(IReadOnlyList<Tier> tiers)
    {
        var errors = new List<string>();
        if (tiers is null || tiers.Count == 0)
        {
            errors.Add("at least one tier is required");
            return errors;
        }
        if (tiers.Count > MaxTiers)
            errors.Add($"at most {MaxTiers} tiers are allowed, got {tiers.Count}");

        for (var i = 0; i < tiers.Count; i++)
        {
            var tier = tiers[i];
            if (tier is null)
            {
                errors.Add($"tiers[{i}] is missing");
                continue;
            }
            if (i == 0 && tier.Start != 0m)
                errors.Add($"tiers[0].start must be 0, got {tier.Start}");
            if (tier.Start < 0m)
                errors.Add($"tiers[{i}].start must be >= 0, got {tier.Start}");
            if (tier.Start > MaxStart)
                errors.Add($"tiers[{i}].start must be <= {MaxStart}, got {tier.Start}");
            if (!HasAtMostMaxDecimalPlaces(tier.Start))
                errors.Add($"tiers[{i}].start must have at most {MaxDecimalPlaces} decimal places, got {tier.Start}");
            if (tier.Rate < 0m)
                errors.Add($"tiers[{i}].rate must be >= 0, got {tier.Rate}");
            if (tier.Rate > MaxRate)
                errors.Add($"tiers[{i}].rate must be <= {MaxRate}, got {tier.Rate}");
            if (!HasAtMostMaxDecimalPlaces(tier.Rate))
                errors.Add($"tiers[{i}].rate must have at most {MaxDecimalPlaces} decimal places, got {tier.Rate}");

            var previous = i > 0 ? tiers[i - 1] : null;
            if (previous is not null && tier.Start <= previous.Start)
                errors.Add($"tiers[{i}].start ({tier.Start}) must be greater than tiers[{i - 1}].start ({previous.Start})");
        }
        return errors;
    }

    // Judged by value, not by decimal.Scale: 1.50000000000m (scale 11) is still 10-place money.
    private static bool HasAtMostMaxDecimalPlaces(decimal value) =>
        decimal.Round(value, MaxDecimalPlaces) == value;
}
