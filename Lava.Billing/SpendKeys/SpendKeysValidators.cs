using FluentValidation;
using Lava.Billing.Infrastructure;

namespace Lava.Billing.SpendKeys;

public static class SpendKeyRules
{
    public const int MaxNameLength = 200;
    public const int MaxListItems = 100;
    public const long MaxRequestCount = 1_000_000_000_000;
    public const int MaxRpm = 1_000_000;
    public static readonly string[] Cycles = ["daily", "weekly", "monthly", "total"];
    public const string ModelPattern = @"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}\z";
    public const string ProviderPattern = @"^[a-z0-9][a-z0-9._-]{0,63}\z";

    public static IRuleBuilderOptions<T, string?> SpendKeyName<T>(this IRuleBuilder<T, string?> rule) =>
        rule.NotEmpty().MaximumLength(MaxNameLength).Must(n => n is null || !n.Contains('\0')).WithMessage("must not contain NUL characters");

    public static IRuleBuilderOptions<T, string?> OneOf<T>(this IRuleBuilder<T, string?> rule, params string[] allowed) =>
        rule.Must(v => v is null || allowed.Contains(v)).WithMessage($"must be one of {string.Join(", ", allowed.Select(a => $"'{a}'"))}");

    public static void Names<T>(this AbstractValidator<T> v, System.Linq.Expressions.Expression<Func<T, IEnumerable<string>?>> list, string pattern, string field)
    {
        v.RuleFor(list).Must(l => l is null || l.Count() <= MaxListItems).WithMessage($"must have at most {MaxListItems} items").OverridePropertyName(field);
        v.RuleForEach(list).NotEmpty().Matches(pattern).OverridePropertyName(field);
    }
}

public sealed class SpendLimitValidator : AbstractValidator<SpendLimitParams>
{
    public SpendLimitValidator()
    {
        RuleFor(l => l.Amount).NotNull().GreaterThan(0m).LessThanOrEqualTo(Money.Max)
            .Must(a => a is null || decimal.Round(a.Value, Money.Scale) == a.Value).WithMessage("must have at most 10 decimal places");
        RuleFor(l => l.Cycle).NotNull().OneOf(SpendKeyRules.Cycles);
    }
}

public sealed class RequestLimitValidator : AbstractValidator<RequestLimitParams>
{
    public RequestLimitValidator()
    {
        RuleFor(l => l.Count).NotNull().InclusiveBetween(1, SpendKeyRules.MaxRequestCount);
        RuleFor(l => l.Cycle).NotNull().OneOf(SpendKeyRules.Cycles);
    }
}

public sealed class RateLimitValidator : AbstractValidator<RateLimitParams>
{
    public RateLimitValidator()
    {
        RuleFor(l => l.Rpm).NotNull().InclusiveBetween(1, SpendKeyRules.MaxRpm);
        RuleFor(l => l.Burst).InclusiveBetween(1, SpendKeyRules.MaxRpm);
    }
}

public sealed class CreateSpendKeyValidator : AbstractValidator<CreateSpendKeyParams>
{
    public CreateSpendKeyValidator()
    {
        RuleFor(p => p.Name).SpendKeyName();
        RuleFor(p => p.Status).OneOf(SpendKeyStatus.Active, SpendKeyStatus.Paused);
        RuleFor(p => p.RequestShape).OneOf(RequestShapes.OpenAi, RequestShapes.Anthropic);
        this.Names(p => p.AllowedModels, SpendKeyRules.ModelPattern, "allowed_models");
        this.Names(p => p.AllowedProviders, SpendKeyRules.ProviderPattern, "allowed_providers");
        RuleFor(p => p.SpendLimit).SetValidator(new SpendLimitValidator()!);
        RuleFor(p => p.RequestLimit).SetValidator(new RequestLimitValidator()!);
        RuleFor(p => p.RateLimit).SetValidator(new RateLimitValidator()!);
    }
}

public sealed class UpdateSpendKeyValidator : AbstractValidator<UpdateSpendKeyParams>
{
    public UpdateSpendKeyValidator()
    {
        RuleFor(p => p.Name.Value).SpendKeyName().When(p => p.Name.IsSet).OverridePropertyName("name");
        RuleFor(p => p.Status.Value).NotNull().OneOf(SpendKeyStatus.Active, SpendKeyStatus.Paused).When(p => p.Status.IsSet).OverridePropertyName("status");
        RuleFor(p => p.RequestShape.Value).NotNull().OneOf(RequestShapes.OpenAi, RequestShapes.Anthropic).When(p => p.RequestShape.IsSet)
            .OverridePropertyName("request_shape");
        this.Names(p => p.AllowedModels.Value, SpendKeyRules.ModelPattern, "allowed_models");
        this.Names(p => p.AllowedProviders.Value, SpendKeyRules.ProviderPattern, "allowed_providers");
        RuleFor(p => p.SpendLimit.Value).SetValidator(new SpendLimitValidator()!).OverridePropertyName("spend_limit");
        RuleFor(p => p.RequestLimit.Value).SetValidator(new RequestLimitValidator()!).OverridePropertyName("request_limit");
        RuleFor(p => p.RateLimit.Value).SetValidator(new RateLimitValidator()!).OverridePropertyName("rate_limit");
    }
}
