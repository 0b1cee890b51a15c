using FluentValidation.Resources;

namespace Lava.Billing.Infrastructure;

/// <summary>
/// FluentValidation's built-in messages, worded as the rest of the API words its own: a fragment that follows the field
/// name ("must not be empty"), because a problem's message reads "field: fragment" and the field is the key of
/// <c>errors</c>. English only, like the API's other messages: the service runs culture-invariant, and FluentValidation
/// falls back to "en" for it.
/// </summary>
public sealed class ValidationMessages : LanguageManager
{
    public ValidationMessages()
    {
        foreach (var (validator, message) in new (string, string)[]
                 {
                     ("NotEmptyValidator", "must not be empty"),
                     ("NotNullValidator", "is required"),
                     ("EmptyValidator", "must be empty"),
                     ("NullValidator", "must be absent"),
                     ("MaximumLengthValidator", "must be at most {MaxLength} characters (you sent {TotalLength})"),
                     ("MinimumLengthValidator", "must be at least {MinLength} characters (you sent {TotalLength})"),
                     ("LengthValidator", "must be {MinLength} to {MaxLength} characters (you sent {TotalLength})"),
                     ("ExactLengthValidator", "must be {MaxLength} characters (you sent {TotalLength})"),
                     ("InclusiveBetweenValidator", "must be between {From} and {To} (you sent {PropertyValue})"),
                     ("ExclusiveBetweenValidator", "must be greater than {From} and less than {To} (you sent {PropertyValue})"),
                     ("GreaterThanValidator", "must be greater than {ComparisonValue}"),
                     ("GreaterThanOrEqualValidator", "must be at least {ComparisonValue}"),
                     ("LessThanValidator", "must be less than {ComparisonValue}"),
                     ("LessThanOrEqualValidator", "must be at most {ComparisonValue}"),
                     ("EqualValidator", "must be {ComparisonValue}"),
                     ("NotEqualValidator", "must not be {ComparisonValue}"),
                     ("EmailValidator", "must be an email address"),
                     ("RegularExpressionValidator", "is not in the expected format"),
                     ("PredicateValidator", "is not valid"),
                     ("AsyncPredicateValidator", "is not valid"),
                     ("EnumValidator", "is not one of the allowed values"),
                     ("ScalePrecisionValidator", "must have at most {ExpectedScale} decimal places"),
                 })
        {
            AddTranslation("en", validator, message);
        }
    }
}
