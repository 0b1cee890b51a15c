using FluentValidation;
using Lava.Billing.Infrastructure;

namespace Lava.Billing.Checkout;

public sealed class CreateCheckoutSessionValidator : AbstractValidator<CreateCheckoutSessionParams>
{
    public const int MaxUrlLength = 2048;

    public CreateCheckoutSessionValidator()
    {
        RuleFor(p => p.CheckoutMode).NotEmpty().Must(m => m is null or CheckoutModes.Subscription or CheckoutModes.CreditBundle)
            .WithMessage($"must be '{CheckoutModes.Subscription}' or '{CheckoutModes.CreditBundle}'");
        RuleFor(p => p.OriginUrl).NotEmpty().MaximumLength(MaxUrlLength)
            .Must(u => u is null || (Uri.TryCreate(u, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https"))
            .WithMessage("must be an absolute http or https URL");
        RuleFor(p => p.CustomerId).MaximumLength(255);
        RuleFor(p => p.PlanId).MaximumLength(255);
        RuleFor(p => p.CreditBundleId).MaximumLength(255);
        When(p => p.CheckoutMode == CheckoutModes.Subscription, () =>
        {
            RuleFor(p => p.PlanId).NotEmpty().WithMessage("is required for a subscription checkout");
            RuleFor(p => p.CreditBundleId).Null().WithMessage("is for a credit_bundle checkout only");
        });
        When(p => p.CheckoutMode == CheckoutModes.CreditBundle, () =>
        {
            RuleFor(p => p.CreditBundleId).NotEmpty().WithMessage("is required for a credit_bundle checkout");
            RuleFor(p => p.CustomerId).NotEmpty().WithMessage("is required for a credit_bundle checkout: bundles are bought for a subscribed customer");
            RuleFor(p => p.PlanId).Null().WithMessage("is for a subscription checkout only");
        });
    }
}

public sealed class CompleteCheckoutSessionValidator : AbstractValidator<CompleteCheckoutSessionParams>
{
    public CompleteCheckoutSessionValidator()
    {
        RuleFor(p => p.PaymentReference).NotEmpty().MaximumLength(255)
            .Must(r => r is null || r.All(ch => ch is >= ' ' and <= '~')).WithMessage("must be printable ASCII");
        RuleFor(p => p.Amount).GreaterThanOrEqualTo(0m).LessThanOrEqualTo(Money.Max)
            .Must(a => a is null || decimal.Round(a.Value, Money.Scale) == a.Value).WithMessage("must have at most 10 decimal places");
    }
}
