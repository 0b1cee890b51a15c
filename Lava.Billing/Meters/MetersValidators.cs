using System.Globalization;
using FluentValidation;
using Lava.Billing.Pricing;

namespace Lava.Billing.Meters;

public static class MeterRules
{
    public const int MaxNameLength = 200;

    /// <summary>Service-wide cap on a tier rate, so any charge the engine computes fits numeric(38,10).</summary>
    public const decimal MaxRate = 1_000_000m;

    /// <summary>Every problem with the tiers at once, in TierRules' words, so a caller fixes them in one round trip.</summary>
    public static List<string> TierErrors(IReadOnlyList<TierParams?> tiers)
    {
        var errors = new List<string>();
        for (var i = 0; i < tiers.Count; i++)
        {
            if (tiers[i] is not { } tier) errors.Add($"tiers[{i}] is missing");
            else
            {
                if (tier.Start is null) errors.Add($"tiers[{i}].start is required");
                if (tier.Rate is null) errors.Add($"tiers[{i}].rate is required");
            }
        }
        if (errors.Count > 0) return errors;

        var parsed = tiers.ToTiers();
        errors.AddRange(TierRules.Validate(parsed));
        for (var i = 0; i < parsed.Count; i++)
        {
            // Above TierRules.MaxRate TierRules has already said so.
            if (parsed[i].Rate is > MaxRate and <= TierRules.MaxRate)
                errors.Add(string.Create(CultureInfo.InvariantCulture, $"tiers[{i}].rate must be <= {MaxRate}, got {parsed[i].Rate}"));
        }
        return errors;
    }

    public static IRuleBuilderOptions<T, string?> MeterName<T>(this IRuleBuilder<T, string?> rule) =>
        rule.NotEmpty().MaximumLength(MaxNameLength);

    public static void Tiers<T>(this IRuleBuilder<T, IReadOnlyList<TierParams?>?> rule) =>
        rule.Custom((tiers, context) =>
        {
            if (tiers is null) return;
            foreach (var error in TierErrors(tiers!)) context.AddFailure(context.PropertyPath, error);
        });
}

public sealed class CreateMeterParamsValidator : AbstractValidator<CreateMeterParams>
{
    public CreateMeterParamsValidator()
    {
        RuleFor(m => m.Name).MeterName();
        RuleFor(m => m.MeterSlug!).Must(MeterSlugs.IsValid).When(m => m.MeterSlug is not null)
            .WithMessage("must match ^[a-z0-9][a-z0-9_-]{0,63}$ (lowercase letters, digits, '_' and '-')");
        RuleFor(m => m.RateType).Must(t => PriceCalculator.TryParseRateType(t, out _))
            .WithMessage("must be 'fixed' or 'percentage'");
        RuleFor(m => m.TierType).Must(t => PriceCalculator.TryParseTierType(t, out _))
            .WithMessage("must be 'tokens_1m', 'characters_1m', 'minutes' or 'requests'");
        RuleFor(m => m.Tiers).NotNull().WithMessage("is required");
        RuleFor(m => m.Tiers).Tiers();
    }
}

public sealed class UpdateMeterParamsValidator : AbstractValidator<UpdateMeterParams>
{
    public UpdateMeterParamsValidator()
    {
        RuleFor(m => m.Name).MeterName().When(m => m.Name is not null);
        RuleFor(m => m.Tiers).Tiers();
    }
}
