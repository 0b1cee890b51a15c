using FluentValidation;

namespace Lava.Billing.Subscriptions;

public sealed class CreateSubscriptionValidator : AbstractValidator<CreateSubscriptionBody>
{
    public CreateSubscriptionValidator()
    {
        RuleFor(b => b.CustomerId).NotEmpty().MaximumLength(255);
        RuleFor(b => b.PlanId).NotEmpty().MaximumLength(255);
    }
}

public sealed class UpdateSubscriptionValidator : AbstractValidator<UpdateSubscriptionBody>
{
    public UpdateSubscriptionValidator() => RuleFor(b => b.AutoTopUpBundleId.Value).MaximumLength(255).OverridePropertyName("auto_top_up_bundle_id");
}
