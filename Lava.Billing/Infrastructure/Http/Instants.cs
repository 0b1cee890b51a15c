using System.Globalization;
using System.Text.RegularExpressions;

namespace Lava.Billing.Infrastructure.Http;

/// <summary>
/// ISO 8601 instants in query strings: <c>2026-03-01T00:00:00+05:30</c>, <c>…Z</c>, <c>2026-03-01T00:00</c> or a bare
/// date (midnight). Without an offset the caller's default offset applies. A '+' sent unescaped arrives as a space
/// (form decoding), so "…00:00 05:30" is read as "+05:30".
/// </summary>
public static partial class Instants
{
    [GeneratedRegex(@"^(?<local>\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,7})?)?)?)(?<offset>Z|[+\- ]\d{2}:?\d{2})?\z")]
    private static partial Regex Shape();

    private static readonly string[] LocalFormats =
        ["yyyy-MM-dd", "yyyy-MM-dd'T'HH:mm", "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd'T'HH:mm:ss.FFFFFFF"];

    /// <summary>
    /// Instants a query may name (docs/input.md): wide enough for any real ledger, narrow enough that a day added or a
    /// range walked never leaves what .NET and PostgreSQL can represent (year 9999 overflowed).
    /// </summary>
    public static readonly DateTimeOffset Earliest = new(1970, 1, 1, 0, 0, 0, TimeSpan.Zero);
    public static readonly DateTimeOffset Latest = new(2200, 1, 1, 0, 0, 0, TimeSpan.Zero);

    public const string Expected = "must be an ISO 8601 date-time with an offset, e.g. 2026-03-01T00:00:00Z or 2026-03-01T00:00:00+05:30, " +
                                   "from 1970-01-01 to 2200-01-01";

    public static bool TryParse(string? raw, TimeSpan defaultOffset, out DateTimeOffset value)
    {
        value = default;
        if (string.IsNullOrEmpty(raw) || raw.Length > 40) return false;
        var match = Shape().Match(raw);
        if (!match.Success ||
            !DateTime.TryParseExact(match.Groups["local"].Value, LocalFormats, CultureInfo.InvariantCulture, DateTimeStyles.None, out var local))
            return false;
        var offset = defaultOffset;
        if (match.Groups["offset"] is { Success: true, Value: var o } && o != "Z")
        {
            var digits = o[1..].Replace(":", "", StringComparison.Ordinal);
            var minutes = int.Parse(digits[..2], CultureInfo.InvariantCulture) * 60 + int.Parse(digits[2..], CultureInfo.InvariantCulture);
            if (minutes > 14 * 60 || digits[2..] is not ("00" or "15" or "30" or "45")) return false;
            offset = TimeSpan.FromMinutes(o[0] == '-' ? -minutes : minutes);
        }
        else if (match.Groups["offset"].Success)
        {
            offset = TimeSpan.Zero;
        }
        try
        {
            value = new DateTimeOffset(local, offset);
            return value >= Earliest && value <= Latest;
        }
        catch (ArgumentOutOfRangeException)
        {
            return false;
        }
    }

    /// <summary>An optional instant: absent is fine (null), present must parse.</summary>
    public static bool TryParseOptional(string? raw, string field, TimeSpan defaultOffset, Dictionary<string, string[]> errors, out DateTimeOffset? value)
    {
        value = null;
        if (string.IsNullOrEmpty(raw)) return true;
        if (TryParse(raw, defaultOffset, out var parsed))
        {
            value = parsed;
            return true;
        }
        errors[field] = [Expected];
        return false;
    }
}
