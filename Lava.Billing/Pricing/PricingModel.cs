namespace Lava.Billing.Pricing;

public enum RateType { Fixed, Percentage }

public enum TierType { Tokens1M, Characters1M, Minutes, Requests }

// Start is in the meter's unit (tokens, characters, minutes, requests); see TierRules for the shape rules.
public sealed record Tier(decimal Start, decimal Rate);

public sealed record MeterPrice(RateType RateType, TierType TierType, IReadOnlyList<Tier> Tiers);

public readonly record struct Usage(
    long InputTokens,
    long OutputTokens,
    long InputCharacters,
    long OutputCharacters,
    decimal InputSeconds,
    decimal OutputSeconds);

// TierStart and Rate echo the tier as configured (meter unit); Quantity is in base units
// (tokens, characters, seconds, requests) so it stays exact for minutes meters.
public sealed record TierLine(decimal TierStart, decimal Rate, decimal Quantity, decimal Amount);

public sealed record Charge(decimal Amount, IReadOnlyList<TierLine> Lines);
