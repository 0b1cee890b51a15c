using FluentValidation;

namespace Lava.Billing.Requests;

/// <summary>Shape of the batch envelope only; each item is validated on its own, and too many items is a 413.</summary>
public sealed class CreateRequestBatchValidator : AbstractValidator<CreateRequestBatchBody>
{
    public CreateRequestBatchValidator()
    {
        RuleFor(b => b.Requests).NotNull().WithMessage("is required: an array of usage reports")
            .Must(r => r is null || r.Count > 0).WithMessage("must hold at least one report");
    }
}
