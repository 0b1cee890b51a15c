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
    [GeneratedRegex(@"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)+\z", RegexOptions.CultureInvariant)]
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
        if (FirstUnstorableNumber(m) is { } number)
            yield return $"holds the number {Shortened(number)}, which is too large or has too many decimal places to store";
    }

    // PostgreSQL stores JSON numbers as numeric: at most 131,072 digits before the decimal point and 16,383 after it.
    private const int MaxIntegerDigits = 131_072;
    private const int MaxDecimalPlaces = 16_383;
    private const long MaxExponent = int.MaxValue / 2;

    private static string? FirstUnstorableNumber(JsonElement element)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Number:
                var raw = element.GetRawText();
                return FitsNumeric(raw) ? null : raw;
            case JsonValueKind.Object:
                foreach (var property in element.EnumerateObject())
                    if (FirstUnstorableNumber(property.Value) is { } inProperty) return inProperty;
                return null;
            case JsonValueKind.Array:
                foreach (var item in element.EnumerateArray())
                    if (FirstUnstorableNumber(item) is { } inItem) return inItem;
                return null;
            default:
                return null;
        }
    }

    /// <summary>Whether a JSON number (<c>-?int(.frac)?(e[+-]?exp)?</c>, as the parser accepted it) fits PostgreSQL's numeric.</summary>
    internal static bool FitsNumeric(string raw)
    {
        var text = raw.AsSpan().TrimStart('-');
        var e = text.IndexOfAny('e', 'E');
        var exponent = 0L;
        if (e >= 0 && !long.TryParse(text[(e + 1)..], System.Globalization.NumberStyles.AllowLeadingSign,
                System.Globalization.CultureInfo.InvariantCulture, out exponent)) return false;
        // PostgreSQL refuses an exponent from INT_MAX / 2 on whatever the digits (zero too); below it nothing here overflows.
        if (exponent >= MaxExponent || exponent <= -MaxExponent) return false;
        var mantissa = e >= 0 ? text[..e] : text;
        var dot = mantissa.IndexOf('.');
        var integer = (dot >= 0 ? mantissa[..dot] : mantissa).TrimStart('0');
        var fraction = dot >= 0 ? mantissa[(dot + 1)..] : [];
        if (fraction.Length - exponent > MaxDecimalPlaces) return false;
        var firstSignificant = fraction.IndexOfAnyExcept('0');
        if (integer.IsEmpty && firstSignificant < 0) return true; // zero: no digits before the point, whatever the exponent
        var integerDigits = integer.IsEmpty ? exponent - firstSignificant : integer.Length + exponent;
        return integerDigits <= MaxIntegerDigits;
    }

    private static string Shortened(string number) => number.Length <= 40 ? number : number[..37] + "...";

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
