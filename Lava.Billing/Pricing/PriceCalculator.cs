using System.Numerics;

namespace Lava.Billing.Pricing;

public static class PriceCalculator
{
    public const int AmountDecimalPlaces = 10;

    public static decimal BaseQuantity(TierType tierType, Usage usage) => tierType switch
    {
        // Summed as decimal so two large longs cannot overflow.
        TierType.Tokens1M => (decimal)usage.InputTokens + usage.OutputTokens,
        TierType.Characters1M => (decimal)usage.InputCharacters + usage.OutputCharacters,
        TierType.Minutes => usage.InputSeconds + usage.OutputSeconds,
        TierType.Requests => 1m,
        _ => throw new ArgumentOutOfRangeException(nameof(tierType), tierType, "unknown tier type"),
    };

    public static Charge Price(MeterPrice price, decimal baseQuantity, decimal baseUsedBefore, decimal? providerCost)
    {
        ArgumentNullException.ThrowIfNull(price);
        if (!Enum.IsDefined(price.TierType))
            throw new ArgumentOutOfRangeException(nameof(price), price.TierType, "unknown tier type");
        var problems = TierRules.Validate(price.Tiers);
        if (problems.Count > 0)
            throw new ArgumentException("invalid tiers: " + string.Join("; ", problems), nameof(price));
        if (baseQuantity < 0m)
            throw new ArgumentOutOfRangeException(nameof(baseQuantity), baseQuantity, "must be >= 0");
        if (baseUsedBefore < 0m)
            throw new ArgumentOutOfRangeException(nameof(baseUsedBefore), baseUsedBefore, "must be >= 0");

        var unitsPerMeterUnit = price.TierType == TierType.Minutes ? 60m : 1m;
        var lines = price.RateType switch
        {
            RateType.Fixed => PriceFixed(price, unitsPerMeterUnit, baseQuantity, baseUsedBefore),
            RateType.Percentage => PricePercentage(price, unitsPerMeterUnit, baseQuantity, baseUsedBefore, providerCost),
            _ => throw new ArgumentOutOfRangeException(nameof(price), price.RateType, "unknown rate type"),
        };

        var amount = 0m;
        foreach (var line in lines)
            amount += line.Amount;
        return new Charge(amount, lines);
    }

    private static List<TierLine> PriceFixed(MeterPrice price, decimal unitsPerMeterUnit, decimal quantity, decimal usedBefore)
    {
        // Rates are per 1M tokens/characters, per minute (60 base seconds) or per request.
        var divisor = price.TierType switch
        {
            TierType.Tokens1M or TierType.Characters1M => 1_000_000,
            TierType.Minutes => 60,
            TierType.Requests => 1,
            _ => throw new ArgumentOutOfRangeException(nameof(price), price.TierType, "unknown tier type"),
        };
        // A fixed rate prices units, so a report with no units has nothing to bill: it yields no
        // lines and Amount 0 (a zero-unit line would only be noise). Percentage differs, since a
        // provider cost can exist without units.
        var lines = new List<TierLine>();
        foreach (var (tier, units) in Split(price.Tiers, unitsPerMeterUnit, quantity, usedBefore))
        {
            var (u, uScale) = Exact(units);
            var (r, rScale) = Exact(tier.Rate);
            var amount = Round(u * r, BigInteger.Pow(10, uScale + rScale) * divisor);
            lines.Add(new TierLine(tier.Start, tier.Rate, units, amount));
        }
        return lines;
    }

    private static List<TierLine> PricePercentage(
        MeterPrice price, decimal unitsPerMeterUnit, decimal quantity, decimal usedBefore, decimal? providerCost)
    {
        if (providerCost is not { } cost)
            throw new ArgumentException("a percentage meter needs the provider cost", nameof(providerCost));
        if (cost < 0m)
            throw new ArgumentOutOfRangeException(nameof(providerCost), cost, "must be >= 0");

        var (c, cScale) = Exact(cost);
        if (quantity == 0m)
        {
            // The cost was still incurred (e.g. a failed call billed by the provider), so it lands
            // where the next unit would have: the tier holding position usedBefore.
            var tier = TierAt(price.Tiers, unitsPerMeterUnit, usedBefore);
            var (r, rScale) = Exact(tier.Rate);
            var amount = Round(c * r, BigInteger.Pow(10, cScale + rScale) * 100);
            return [new TierLine(tier.Start, tier.Rate, 0m, amount)];
        }

        // cost * units/quantity * rate/100, as one fraction so there is a single rounding per line.
        var (q, qScale) = Exact(quantity);
        var lines = new List<TierLine>();
        foreach (var (tier, units) in Split(price.Tiers, unitsPerMeterUnit, quantity, usedBefore))
        {
            var (u, uScale) = Exact(units);
            var (r, rScale) = Exact(tier.Rate);
            var numerator = c * u * r * BigInteger.Pow(10, qScale);
            var denominator = q * 100 * BigInteger.Pow(10, cScale + uScale + rScale);
            lines.Add(new TierLine(tier.Start, tier.Rate, units, Round(numerator, denominator)));
        }
        return lines;
    }

    // Yields the units of [usedBefore, usedBefore + quantity) that fall in each tier, ascending,
    // skipping tiers the range does not touch. Tier i spans [start_i, start_i+1) in base units.
    // Plain decimal is exact here: within the service bounds every value fits in 28 digits.
    private static IEnumerable<(Tier Tier, decimal Units)> Split(
        IReadOnlyList<Tier> tiers, decimal unitsPerMeterUnit, decimal quantity, decimal usedBefore)
    {
        var from = usedBefore;
        var to = usedBefore + quantity;
        for (var i = 0; i < tiers.Count && from < to; i++)
        {
            var upper = i + 1 < tiers.Count ? tiers[i + 1].Start * unitsPerMeterUnit : decimal.MaxValue;
            if (upper <= from)
                continue;
            var end = Math.Min(to, upper);
            yield return (tiers[i], end - from);
            from = end;
        }
    }

    private static Tier TierAt(IReadOnlyList<Tier> tiers, decimal unitsPerMeterUnit, decimal position)
    {
        var found = tiers[0];
        foreach (var tier in tiers)
        {
            if (tier.Start * unitsPerMeterUnit > position)
                break;
            found = tier;
        }
        return found;
    }

    // decimal as mantissa / 10^scale, so products of several decimals stay exact (decimal itself
    // would round or overflow: cost * units * rate can reach ~1e59 in mantissa digits).
    private static (BigInteger Mantissa, int Scale) Exact(decimal value)
    {
        Span<int> bits = stackalloc int[4];
        decimal.GetBits(value, bits);
        var mantissa = ((BigInteger)(uint)bits[2] << 64) | ((BigInteger)(uint)bits[1] << 32) | (uint)bits[0];
        return (value < 0m ? -mantissa : mantissa, value.Scale);
    }

    private static readonly BigInteger MaxMantissa = (BigInteger.One << 96) - 1;

    // Rounds numerator/denominator (both >= 0) half away from zero to 10 places, straight from the
    // exact fraction so there is never a double rounding. Amounts of ~7.9e18 or more cannot carry
    // 10 places in a decimal; those keep as many places as fit (rounded once, from the fraction).
    private static decimal Round(BigInteger numerator, BigInteger denominator)
    {
        for (var scale = AmountDecimalPlaces; scale >= 0; scale--)
        {
            var scaled = numerator * BigInteger.Pow(10, scale);
            var mantissa = BigInteger.DivRem(scaled, denominator, out var remainder);
            if (remainder * 2 >= denominator)
                mantissa += 1;
            if (mantissa > MaxMantissa)
                continue;
            // Trailing zeros dropped so 17 reads "17", not "17.0000000000".
            while (scale > 0 && mantissa % 10 == 0)
            {
                mantissa /= 10;
                scale--;
            }
            return new decimal((int)(uint)(mantissa & uint.MaxValue), (int)(uint)((mantissa >> 32) & uint.MaxValue),
                (int)(uint)(mantissa >> 64), isNegative: false, (byte)scale);
        }
        throw new OverflowException("amount exceeds the decimal range");
    }

    public static string RateTypeName(RateType t) => t switch
    {
        RateType.Fixed => "fixed",
        RateType.Percentage => "percentage",
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown rate type"),
    };

    public static string TierTypeName(TierType t) => t switch
    {
        TierType.Tokens1M => "tokens_1m",
        TierType.Characters1M => "characters_1m",
        TierType.Minutes => "minutes",
        TierType.Requests => "requests",
        _ => throw new ArgumentOutOfRangeException(nameof(t), t, "unknown tier type"),
    };

    // Exact, case-sensitive: only the canonical names round-trip, so stored values stay canonical.
    public static bool TryParseRateType(string? s, out RateType t)
    {
        foreach (var candidate in Enum.GetValues<RateType>())
        {
            if (string.Equals(s, RateTypeName(candidate), StringComparison.Ordinal))
            {
                t = candidate;
                return true;
            }
        }
        t = default;
        return false;
    }

    public static bool TryParseTierType(string? s, out TierType t)
    {
        foreach (var candidate in Enum.GetValues<TierType>())
        {
            if (string.Equals(s, TierTypeName(candidate), StringComparison.Ordinal))
            {
                t = candidate;
                return true;
            }
        }
        t = default;
        return false;
    }
}
