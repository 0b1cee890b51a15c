namespace Lava.Billing.SpendKeys;

/// <summary>Why a call made with a spend key is refused before any provider is reached. Closed: a switch needs no default.</summary>
public enum SpendKeyRefusal
{
    UnknownKey,
    Paused,
    Expired,
    ModelNotAllowed,
    ProviderNotAllowed,
    RateLimited,
    RequestLimitReached,
    SpendLimitReached,
}

/// <summary>A key's state as read under its row lock, with its usage in the current cycles.</summary>
public sealed class LockedSpendKey
{
    public string MerchantId { get; init; } = "";
    public string SpendKeyId { get; init; } = "";
    public string Status { get; init; } = "";
    public string RequestShape { get; init; } = "";
    public string[]? AllowedModels { get; init; }
    public string[]? AllowedProviders { get; init; }
    public decimal? SpendLimitAmount { get; init; }
    public long? RequestLimitCount { get; init; }
    public int? RateLimitRpm { get; init; }
    public int? RateLimitBurst { get; init; }
    public decimal? RateTokens { get; init; }
    public DateTime? RateRefilledAt { get; init; }
    public DateTime? ExpiresAt { get; init; }
    /// <summary>The ledger's spend since the spend limit's cycle began, plus the holds of the calls still running.</summary>
    public decimal SpendInCycle { get; init; }
    public long RequestsInCycle { get; init; }
    public DateTime? SpendCycleEnd { get; init; }
    public DateTime? RequestCycleEnd { get; init; }
}

/// <summary>The decisions on a locked key: pure, so each rule is tested without a database.</summary>
public static class SpendKeyPolicy
{
    /// <summary>The token bucket after refilling up to <paramref name="now"/>: rpm tokens a minute, up to burst (rpm without one).</summary>
    public static decimal Tokens(LockedSpendKey k, DateTime now)
    {
        var capacity = (decimal)(k.RateLimitBurst ?? k.RateLimitRpm!.Value);
        if (k.RateTokens is not { } tokens || k.RateRefilledAt is not { } at) return capacity;
        var elapsedSeconds = (decimal)Math.Max(0, (now - at).TotalSeconds);
        return Math.Min(capacity, tokens + elapsedSeconds * k.RateLimitRpm!.Value / 60m);
    }

    /// <summary>
    /// The refusal for a call of <paramref name="model"/> at <paramref name="provider"/> whose worst case is
    /// <paramref name="worstCase"/>, or null when it may go ahead; and when a refused call could next succeed.
    /// </summary>
    public static (SpendKeyRefusal? Refusal, TimeSpan? RetryAfter) Decide(LockedSpendKey k, string model, string provider, decimal worstCase, DateTime now)
    {
        if (k.Status != SpendKeyStatus.Active) return (SpendKeyRefusal.Paused, null);
        if (k.ExpiresAt is { } expires && expires <= now) return (SpendKeyRefusal.Expired, null);
        if (k.AllowedModels is { } models && !models.Contains(model, StringComparer.Ordinal)) return (SpendKeyRefusal.ModelNotAllowed, null);
        if (k.AllowedProviders is { } providers && !providers.Contains(provider, StringComparer.Ordinal)) return (SpendKeyRefusal.ProviderNotAllowed, null);
        if (k.RateLimitRpm is { } rpm)
        {
            var tokens = Tokens(k, now);
            if (tokens < 1) return (SpendKeyRefusal.RateLimited, TimeSpan.FromSeconds((double)((1 - tokens) * 60m / rpm)));
        }
        if (k.RequestLimitCount is { } count && k.RequestsInCycle >= count)
            return (SpendKeyRefusal.RequestLimitReached, k.RequestCycleEnd - now);
        if (k.SpendLimitAmount is { } limit && k.SpendInCycle + worstCase > limit)
            return (SpendKeyRefusal.SpendLimitReached, k.SpendCycleEnd - now);
        return (null, null);
    }
}
