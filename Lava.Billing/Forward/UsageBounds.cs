using Lava.Billing.Requests;

namespace Lava.Billing.Forward;

/// <summary>
/// Provider-reported usage held to the limits of a usage report (<see cref="CreateRequestValidator"/>): at most 10^12
/// tokens or characters a side, 10^9 seconds, a provider cost of 10^9. A provider that reports more is wrong or
/// hostile; its numbers are never billed (nor wrapped), the call is billed from the gateway's own estimate and flagged.
/// </summary>
public static class UsageBounds
{
    /// <summary>Where a parsed count saturates: one past the limit, so three of them still sum inside a long.</summary>
    public const long Ceiling = CreateRequestValidator.MaxCount + 1;

    /// <summary>The anomaly recorded on a call (and in its report's metadata) whose provider usage was out of range.</summary>
    public const string OutOfRange = "usage_out_of_range";

    public static bool Within(NormalizedUsage usage, decimal? providerCost) =>
        usage is { InputUncached: >= 0, CacheRead: >= 0, CacheWrite: >= 0, Output: >= 0, InputCharacters: >= 0, InputSeconds: >= 0 } &&
        usage.InputUncached <= CreateRequestValidator.MaxCount && usage.CacheRead <= CreateRequestValidator.MaxCount &&
        usage.CacheWrite <= CreateRequestValidator.MaxCount && usage.InputTokens <= CreateRequestValidator.MaxCount &&
        usage.Output <= CreateRequestValidator.MaxCount && usage.InputCharacters <= CreateRequestValidator.MaxCount &&
        usage.InputSeconds <= CreateRequestValidator.MaxSeconds && providerCost is null or (>= 0 and <= CreateRequestValidator.MaxCost);
}
