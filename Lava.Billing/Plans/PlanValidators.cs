using FluentValidation;
using Lava.Billing.Infrastructure;

namespace Lava.Billing.Plans;

public static class PlanLimits
{
    public const int MaxNameLength = 200;
    public const int MaxBundles = 20;
    public const int MaxMeters = 100;
    /// <summary>An update may touch each of the 20 live bundles and add up to 20 more (the total is checked against the plan).</summary>
    public const int MaxBundleChanges = 2 * MaxBundles;
    public const int MaxIdLength = 64;
}

internal static class AmountRules
{
    /// <summary>A money field: at most 10 decimal places and inside numeric(38,10) with room for sums.</summary>
    public static IRuleBuilderOptions<T, decimal?> Amount<T>(this IRuleBuilder<T, decimal?> rule) =>
        rule.InclusiveBetween(0m, Money.Max)
            .Must(a => a is null || decimal.Round(a.Value, Money.Scale) == a.Value)
            .WithMessage($"must have at most {Money.Scale} decimal places");

    public static IRuleBuilderOptions<T, string?> OneOf<T>(this IRuleBuilder<T, string?> rule, string[] allowed) =>
        rule.Must(v => v is null || allowed.Contains(v)).WithMessage($"must be one of: {string.Join(", ", allowed)}");

    public static void ValidMeterIds<T>(this IRuleBuilder<T, List<string>?> rule) =>
        rule.Must(ids => ids is null || ids.Count <= PlanLimits.MaxMeters)
            .WithMessage($"must list at most {PlanLimits.MaxMeters} meters")
            .Must(ids => ids is null || ids.All(id => id is { Length: > 0 and <= PlanLimits.MaxIdLength }))
            .WithMessage("must be meter ids");
}

public sealed class CreatePlanValidator : AbstractValidator<CreatePlanParams>
{
    public CreatePlanValidator()
    {
        RuleFor(p => p.Name).NotEmpty().MaximumLength(PlanLimits.MaxNameLength);
        RuleFor(p => p.PeriodAmount).NotNull().Amount();
        RuleFor(p => p.BillingInterval).NotEmpty().OneOf(PlanVocabulary.BillingIntervals);
        RuleFor(p => p.RolloverType).OneOf(PlanVocabulary.RolloverTypes);
        RuleFor(p => p.BundleRolloverType).OneOf(PlanVocabulary.RolloverTypes);
        RuleFor(p => p.IncludedCredit).Amount();
        RuleFor(p => p.IncludedCredit).Must((p, included) => included is null || p.PeriodAmount is null || included <= p.PeriodAmount)
            .WithMessage("must not exceed period_amount");
        RuleFor(p => p.MeterIds).ValidMeterIds();
        RuleFor(p => p.CreditBundles).Must(b => b is null || b.Count <= PlanLimits.MaxBundles)
            .WithMessage($"must have at most {PlanLimits.MaxBundles} bundles");
        RuleForEach(p => p.CreditBundles).NotNull().ChildRules(bundle =>
        {
            bundle.RuleFor(b => b.Name).NotEmpty().MaximumLength(PlanLimits.MaxNameLength);
            bundle.RuleFor(b => b.Cost).NotNull().Amount();
            bundle.RuleFor(b => b.CreditAmount).NotNull().GreaterThan(0m).Amount();
        });
        RuleFor(p => p.DefaultAutoTopUpBundleIndex)
            .Must((p, index) => index is null || (index >= 0 && index < (p.CreditBundles?.Count ?? 0)))
            .WithMessage("must be the index of one of credit_bundles");
    }
}

public sealed class UpdatePlanValidator : AbstractValidator<UpdatePlanParams>
{
    public UpdatePlanValidator()
    {
        RuleFor(p => p.Name).NotEmpty().MaximumLength(PlanLimits.MaxNameLength).When(p => p.Name is not null);
        RuleFor(p => p.RolloverType).OneOf(PlanVocabulary.RolloverTypes);
        RuleFor(p => p.BundleRolloverType).OneOf(PlanVocabulary.RolloverTypes);
        RuleFor(p => p.IncludedCredit).Amount();
        RuleFor(p => p.DefaultAutoTopUpBundleId.Value).Must(id => id is null || id.Length is > 0 and <= PlanLimits.MaxIdLength)
            .OverridePropertyName("default_auto_top_up_bundle_id").WithMessage("must be a credit bundle id or null");
        RuleFor(p => p.MeterIds).ValidMeterIds();
        RuleFor(p => p.CreditBundles).Must(b => b is null || b.Count <= PlanLimits.MaxBundleChanges)
            .WithMessage($"must have at most {PlanLimits.MaxBundleChanges} entries")
            .Must(b => b is null || b.Where(c => c?.CreditBundleId is not null).GroupBy(c => c.CreditBundleId).All(g => g.Count() == 1))
            .WithMessage("must name each credit_bundle_id at most once");
        RuleForEach(p => p.CreditBundles).NotNull().ChildRules(change =>
        {
            change.RuleFor(c => c.CreditBundleId).NotEmpty().WithMessage("must be a credit bundle id (one is required to delete a bundle)")
                .MaximumLength(PlanLimits.MaxIdLength)
                .When(c => c.CreditBundleId is not null || c.IsDeleted == true);
            change.When(c => c.IsDeleted != true, () =>
            {
                change.RuleFor(c => c.Name).NotEmpty().MaximumLength(PlanLimits.MaxNameLength);
                change.RuleFor(c => c.Cost).NotNull().Amount();
                change.RuleFor(c => c.CreditAmount).NotNull().GreaterThan(0m).Amount();
            });
        });
    }
}
