using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using FluentValidation;
using Lava.Billing.Infrastructure;

namespace Lava.Billing.Customers;

public static partial class CustomerRules
{
    public const int MaxFieldLength = 200;
    public const int MaxMetadataKeys = 50;
    public const int MaxMetadataBytes = 16 * 1024;

    // One '@', something before it, a dotted domain after it, no spaces: what a mail system could deliver to.
    [GeneratedRegex(@"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+$", RegexOptions.CultureInvariant)]
    private static partial Regex EmailShape();

    public static bool IsEmail(string? email) => email is null || EmailShape().IsMatch(email);

    /// <summary>The metadata as it will be stored (compact JSON), or null when there is none.</summary>
    public static string? Serialize(JsonElement? metadata) =>
        metadata is { ValueKind: not JsonValueKind.Null } m ? JsonSerializer.Serialize(m) : null;

    public static IEnumerable<string> MetadataErrors(JsonElement? metadata)
    {
        if (metadata is not { ValueKind: not JsonValueKind.Null } m) yield break;
        if (m.ValueKind != JsonValueKind.Object)
        {
            yield return "must be a JSON object";
            yield break;
        }
        var keys = m.EnumerateObject().Count();
        if (keys > MaxMetadataKeys) yield return $"must have at most {MaxMetadataKeys} keys, got {keys}";
        var bytes = Encoding.UTF8.GetByteCount(Serialize(m)!);
        if (bytes > MaxMetadataBytes) yield return $"must be at most {MaxMetadataBytes} bytes as JSON, got {bytes}";
    }

    public static IRuleBuilderOptions<T, string?> ContactField<T>(this IRuleBuilder<T, string?> rule) =>
        rule.Must(s => s is null || s.Length > 0).WithMessage("must not be empty (send null to leave it unset)")
            .MaximumLength(MaxFieldLength);

    public static IRuleBuilderOptions<T, string?> Email<T>(this IRuleBuilder<T, string?> rule) =>
        rule.ContactField().Must(IsEmail).WithMessage("must be an email address");

    public static void Metadata<T>(this IRuleBuilder<T, JsonElement?> rule) =>
        rule.Custom((metadata, context) =>
        {
            foreach (var error in MetadataErrors(metadata)) context.AddFailure("metadata", error);
        });
}

public sealed class CreateCustomerParamsValidator : AbstractValidator<CreateCustomerParams>
{
    public CreateCustomerParamsValidator()
    {
        RuleFor(c => c.ReferenceId).ContactField();
        RuleFor(c => c.Email).Email();
        RuleFor(c => c.Phone).ContactField();
        RuleFor(c => c.Name).ContactField();
        RuleFor(c => c.Metadata).Metadata();
    }
}

public sealed class UpdateCustomerParamsValidator : AbstractValidator<UpdateCustomerParams>
{
    public UpdateCustomerParamsValidator()
    {
        RuleFor(c => c.ReferenceId.Value).ContactField().OverridePropertyName("reference_id");
        RuleFor(c => c.Email.Value).Email().OverridePropertyName("email");
        RuleFor(c => c.Phone.Value).ContactField().OverridePropertyName("phone");
        RuleFor(c => c.Name.Value).ContactField().OverridePropertyName("name");
        RuleFor(c => c.Metadata.Value).Metadata();
    }
}
