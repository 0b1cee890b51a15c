namespace Lava.Billing.Finance;

/// <summary>One day of <c>RestUsage.items</c> (SDK 11.2.0): the day's bounds are in the offset of the query's start.</summary>
public sealed record UsageItem(
    string Date, DateTimeOffset Start, DateTimeOffset End,
    long TotalRequests, long TotalUsageTokens, string TotalCost, string TotalCharge);

public sealed record UsageTotals(long TotalRequests, long TotalUsageTokens, string TotalCost, string TotalCharge);

/// <summary>SDK <c>RestUsage</c>.</summary>
public sealed record RestUsage(IReadOnlyList<UsageItem> Items, UsageTotals Totals);
