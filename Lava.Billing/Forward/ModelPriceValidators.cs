using System.Text.RegularExpressions;
using FluentValidation;

namespace Lava.Billing.Forward;

public sealed partial class CreateModelPriceValidator : AbstractValidator<CreateModelPriceParams>
{
    public const decimal MaxPrice = 1_000_000m;

    [GeneratedRegex(@"^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}\z")] private static partial Regex ModelId();

    public CreateModelPriceValidator()
    {
        RuleFor(p => p.Model).NotEmpty().Must(m => m is null || ModelId().IsMatch(m))
            .WithMessage("must be 1 to 128 characters of A-Z, a-z, 0-9 and . _ : / @ -, starting with a letter or digit");
        RuleFor(p => p.OwnedBy).Length(1, 100);
        RuleFor(p => p.Input).NotNull();
        RuleFor(p => p.Output).NotNull();
        foreach (var (name, get) in new (string, Func<CreateModelPriceParams, decimal?>)[]
                 {
                     ("input", p => p.Input), ("cached_input", p => p.CachedInput), ("cache_write", p => p.CacheWrite),
                     ("output", p => p.Output), ("characters", p => p.Characters), ("per_minute", p => p.PerMinute),
                 })
        {
            RuleFor(p => get(p)).InclusiveBetween(0m, MaxPrice).OverridePropertyName(name).WithName(name);
            RuleFor(p => get(p)).Must(v => v is null || decimal.Round(v.Value, ProviderCost.PriceDecimalPlaces) == v.Value)
                .OverridePropertyName(name).WithMessage($"must have at most {ProviderCost.PriceDecimalPlaces} decimal places");
        }
    }
}
