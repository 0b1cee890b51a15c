namespace Lava.Billing.Forward;

/// <summary>
/// One version of a model's provider price. Token prices are per 1M tokens, <see cref="Characters"/> per 1M input
/// characters (text to speech), <see cref="Minutes"/> per minute of input audio (transcription).
/// </summary>
public sealed record ModelPrice(
    string Model,
    int Version,
    string OwnedBy,
    decimal Input,
    decimal CachedInput,
    decimal CacheWrite,
    decimal Output,
    decimal Characters,
    decimal Minutes,
    bool MerchantOwned,
    DateTimeOffset CreatedAt);

public static class ProviderCost
{
    /// <summary>Prices carry at most this many decimal places, so a token cost is exact at the ledger's 10.</summary>
    public const int PriceDecimalPlaces = 4;

    /// <summary>
    /// What the provider charges for <paramref name="usage"/>: each disjoint token class at its own price (so a cached
    /// or reasoning token is priced once), plus characters and audio seconds. Token and character costs are exact
    /// (count × price with ≤ 4 places ÷ 10^6 has ≤ 10 places); per-minute audio is rounded half away from zero to
    /// 10 places, the ledger's precision.
    /// </summary>
    public static decimal Compute(NormalizedUsage usage, ModelPrice price)
    {
        var perMillion = usage.InputUncached * price.Input + usage.CacheRead * price.CachedInput +
                         usage.CacheWrite * price.CacheWrite + usage.Output * price.Output +
                         usage.InputCharacters * price.Characters;
        var cost = perMillion / 1_000_000m + usage.InputSeconds * price.Minutes / 60m;
        return decimal.Round(cost, Infrastructure.Money.Scale, MidpointRounding.AwayFromZero);
    }
}
