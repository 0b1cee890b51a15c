using FluentValidation;
using Lava.Billing.Infrastructure;

namespace Lava.Billing.Credits;

public sealed class CreateHoldValidator : AbstractValidator<CreateHoldBody>
{
    public const int MaxExpiresInSeconds = 86_400;

    public CreateHoldValidator()
    {
        RuleFor(b => b.CustomerId).NotEmpty().MaximumLength(255);
        RuleFor(b => b.Amount).NotNull().GreaterThan(0m).LessThanOrEqualTo(Money.Max)
            .Must(a => a is null || decimal.Round(a.Value, Money.Scale) == a.Value).WithMessage("must have at most 10 decimal places");
        RuleFor(b => b.ExpiresIn).InclusiveBetween(1, MaxExpiresInSeconds);
        RuleFor(b => b.MeterSlug).MaximumLength(64);
    }
}

public sealed class PurchaseBundleValidator : AbstractValidator<PurchaseBundleBody>
{
    public PurchaseBundleValidator() => RuleFor(b => b.CustomerId).NotEmpty().MaximumLength(255);
}
