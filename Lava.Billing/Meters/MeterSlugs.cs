using System.Text;
using System.Text.RegularExpressions;

namespace Lava.Billing.Meters;

/// <summary>Meter slugs: the names usage reports and forward tokens use for a meter. Pure, no I/O.</summary>
public static partial class MeterSlugs
{
    public const int MaxLength = 64;
    private const string Fallback = "meter";

    [GeneratedRegex(@"^[a-z0-9][a-z0-9_-]{0,63}\z", RegexOptions.CultureInvariant)]
    private static partial Regex Shape();

    public static bool IsValid(string slug) => Shape().IsMatch(slug);

    /// <summary>
    /// "GPT-4o Tokens (input)" → "gpt-4o-tokens-input": lowercase ASCII letters and digits kept, every run of anything
    /// else one '-', trimmed, at most 64 characters. A name with no letters or digits gives "meter".
    /// </summary>
    public static string FromName(string name)
    {
        var slug = new StringBuilder(MaxLength);
        foreach (var c in name.ToLowerInvariant())
        {
            if (slug.Length == MaxLength) break;
            if (c is (>= 'a' and <= 'z') or (>= '0' and <= '9')) slug.Append(c);
            else if (slug.Length > 0 && slug[^1] != '-') slug.Append('-');
        }
        var trimmed = slug.ToString().TrimEnd('-');
        return trimmed.Length == 0 ? Fallback : trimmed;
    }

    /// <summary>The n-th candidate for a generated slug: the stem itself, then stem-2, stem-3… (stem cut to fit 64).</summary>
    public static string Candidate(string stem, int n)
    {
        if (n <= 1) return stem;
        var suffix = "-" + n.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return stem.Length + suffix.Length <= MaxLength ? stem + suffix : stem[..(MaxLength - suffix.Length)].TrimEnd('-') + suffix;
    }
}
