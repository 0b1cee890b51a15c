using FluentValidation;

namespace Lava.Billing.Webhooks;

public static class WebhookRules
{
    public const int MaxNameLength = 200;

    public static IRuleBuilderOptions<T, string?> WebhookName<T>(this IRuleBuilder<T, string?> rule) =>
        rule.NotEmpty().MaximumLength(MaxNameLength).Must(s => s is null || !s.Contains('\0')).WithMessage("must not contain NUL characters");

    public static IRuleBuilderOptions<T, string?> WebhookUrl<T>(this IRuleBuilder<T, string?> rule, WebhookOptions options) =>
        rule.NotEmpty()
            .Must(url => url is null || WebhookUrls.Problem(url, options.AllowPrivateAddresses) is null)
            .WithMessage((_, url) => WebhookUrls.Problem(url!, options.AllowPrivateAddresses)!);

    public static IRuleBuilderOptions<T, string[]?> EventTypes<T>(this IRuleBuilder<T, string[]?> rule) =>
        rule.Must(types => types is null || (types.Length > 0 && types.Length <= WebhookEvents.All.Count && types.All(WebhookEvents.All.Contains)))
            .WithMessage($"must be null (every event) or a non-empty list of: {string.Join(", ", WebhookEvents.All)}");
}

public sealed class CreateWebhookParamsValidator : AbstractValidator<CreateWebhookParams>
{
    public CreateWebhookParamsValidator(WebhookOptions options)
    {
        RuleFor(w => w.Name).WebhookName();
        RuleFor(w => w.Url).WebhookUrl(options);
        RuleFor(w => w.EventTypes).EventTypes();
    }
}

public sealed class UpdateWebhookParamsValidator : AbstractValidator<UpdateWebhookParams>
{
    public UpdateWebhookParamsValidator(WebhookOptions options)
    {
        When(w => w.Name.IsSet, () => RuleFor(w => w.Name.Value).WebhookName().OverridePropertyName("name"));
        When(w => w.Url.IsSet, () => RuleFor(w => w.Url.Value).WebhookUrl(options).OverridePropertyName("url"));
        RuleFor(w => w.EventTypes.Value).EventTypes().OverridePropertyName("event_types");
        When(w => w.Status.IsSet, () => RuleFor(w => w.Status.Value).Must(s => s is "enabled" or "disabled")
            .WithMessage("must be 'enabled' or 'disabled'").OverridePropertyName("status"));
    }
}

public sealed class RollWebhookSecretParamsValidator : AbstractValidator<RollWebhookSecretParams>
{
    public const int MaxOverlapSeconds = 7 * 86_400;

    public RollWebhookSecretParamsValidator()
    {
        RuleFor(r => r.OverlapSeconds).InclusiveBetween(0, MaxOverlapSeconds);
    }
}
