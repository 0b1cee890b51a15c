using System.Globalization;

namespace Lava.Billing.Infrastructure;

/// <summary>Money on the wire: an exact decimal string with 10 places (docs/design.md, "Wire conventions").</summary>
public static class Money
{
    public const int Scale = 10;

    /// <summary>Largest single amount a money column or field accepts (a price, a charge, a bundle, a hold, a limit).</summary>
    public const decimal Max = 1_000_000_000_000_000m;

    /// <summary>
    /// Largest balance, ledger entry or usage total the database stores (either sign; migration 0040). A decimal read
    /// back with 10 places fits only below about 7.9e18, and three balances added together stay below it.
    /// </summary>
    public const decimal MaxBalance = 1_000_000_000_000_000_000m;

    public static string Format(decimal amount) =>
        decimal.Round(amount, Scale, MidpointRounding.AwayFromZero).ToString("F10", CultureInfo.InvariantCulture);

    public static string? Format(decimal? amount) => amount is { } a ? Format(a) : null;

    /// <summary><see cref="Format(decimal)"/> as UTF-8 into <paramref name="utf8"/>, without a string (exports).</summary>
    public static bool TryFormat(decimal amount, Span<byte> utf8, out int written) =>
        decimal.Round(amount, Scale, MidpointRounding.AwayFromZero).TryFormat(utf8, out written, "F10", CultureInfo.InvariantCulture);

    /// <summary>Parses a plain decimal string (no exponent, no thousands separators).</summary>
    public static bool TryParse(string? text, out decimal amount)
    {
        amount = 0;
        if (string.IsNullOrWhiteSpace(text) || text.Length > 40) return false;
        return decimal.TryParse(text, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint,
            CultureInfo.InvariantCulture, out amount);
    }
}
