using System.Text.RegularExpressions;
using FluentValidation;

namespace Lava.Billing.Requests;

/// <summary>
/// Shape of a usage report. The bounds keep every charge inside numeric(38,10) (rates are capped at 1,000,000 per
/// unit): 10^12 tokens or characters a side, 10^9 seconds a side, provider cost 10^9.
/// </summary>
public sealed partial class CreateRequestValidator : AbstractValidator<CreateRequestBody>
{
    public const long MaxCount = 1_000_000_000_000;
    public const decimal MaxSeconds = 1_000_000_000m;
    public const decimal MaxCost = 1_000_000_000m;
    public const int MaxMetadataPairs = 100;

    [GeneratedRegex(@"^[ -~]{1,255}\z")] private static partial Regex PrintableAscii();
    [GeneratedRegex(@"^[A-Za-z0-9_]{1,255}\z")] private static partial Regex MetadataKey();

    private static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "...";

    public static readonly TimeSpan MaxFutureSkew = TimeSpan.FromMinutes(5);

    /// <summary>
    /// How far back a report may be dated (docs/input.md): a year of catching up after an outage, and a month more, while
    /// a mistaken date (0001-01-01, a seconds-for-milliseconds slip) is refused instead of landing in a long-closed period.
    /// </summary>
    public static readonly TimeSpan MaxBackdate = TimeSpan.FromDays(400);

    public CreateRequestValidator(TimeProvider clock)
    {
        RuleFor(r => r.RequestId).NotEmpty().Must(id => id is null || PrintableAscii().IsMatch(id))
            .WithMessage("must be 1 to 255 printable ASCII characters");
        RuleFor(r => r.MeterSlug).NotEmpty().MaximumLength(64);
        RuleFor(r => r.Customer).MaximumLength(255).OverridePropertyName("customer_id");
        RuleFor(r => r).Must(r => r.CustomerId is null || r.ConnectionId is null || r.CustomerId == r.ConnectionId)
            .WithName("connection_id").WithMessage("connection_id is an alias of customer_id; they must not differ");

        foreach (var (name, get) in new (string, Func<CreateRequestBody, long?>)[]
                 {
                     ("input_tokens", r => r.InputTokens), ("output_tokens", r => r.OutputTokens),
                     ("input_characters", r => r.InputCharacters), ("output_characters", r => r.OutputCharacters),
                 })
        {
            RuleFor(r => get(r)).InclusiveBetween(0, MaxCount).OverridePropertyName(name).WithName(name)
                .WithMessage("must be between 0 and 10^12 (you sent {PropertyValue})");
        }
        foreach (var (name, get) in new (string, Func<CreateRequestBody, decimal?>)[]
                 {
                     ("input_seconds", r => r.InputSeconds), ("output_seconds", r => r.OutputSeconds),
                 })
        {
            RuleFor(r => get(r)).InclusiveBetween(0m, MaxSeconds).OverridePropertyName(name).WithName(name);
            RuleFor(r => get(r)).Must(s => s is null || s.Value.Scale <= 6 || decimal.Round(s.Value, 6) == s.Value)
                .OverridePropertyName(name).WithMessage("must have at most 6 decimal places");
        }
        RuleFor(r => r.Cost).InclusiveBetween(0m, MaxCost)
            .Must(c => c is null || decimal.Round(c.Value, 10) == c.Value).WithMessage("must have at most 10 decimal places");

        RuleFor(r => r.HoldId).MaximumLength(64);
        RuleFor(r => r.Customer).NotEmpty().When(r => r.DisableBilling == true || r.HoldId is not null)
            .OverridePropertyName("customer_id").WithMessage("is required with disable_billing or hold_id");
        RuleFor(r => r.Timestamp).Must(t => t is null || t.Value <= clock.GetUtcNow() + MaxFutureSkew)
            .WithMessage("must not be more than 5 minutes in the future");
        RuleFor(r => r.Timestamp).Must(t => t is null || t.Value >= clock.GetUtcNow() - MaxBackdate)
            .WithMessage($"must not be more than {MaxBackdate.TotalDays:0} days in the past");

        RuleFor(r => r.Metadata).Must(m => m is null || m.Count <= MaxMetadataPairs)
            .WithMessage($"must have at most {MaxMetadataPairs} pairs");
        RuleFor(r => r.Metadata).Custom((metadata, context) =>
        {
            foreach (var (key, value) in metadata ?? [])
            {
                if (!MetadataKey().IsMatch(key))
                    context.AddFailure("metadata", $"key '{Truncate(key)}' must be 1 to 255 characters of A-Z, a-z, 0-9 and _");
                if (value is not { Length: >= 1 and <= 255 })
                    context.AddFailure("metadata", $"the value of '{Truncate(key)}' must be 1 to 255 characters");
            }
        });
    }
}
