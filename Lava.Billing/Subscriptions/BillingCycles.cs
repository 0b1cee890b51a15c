namespace Lava.Billing.Subscriptions;

/// <summary>
/// Cycle boundaries, always counted from the subscription's start (the anchor) so month lengths never drift:
/// cycle n spans [End(n − 1), End(n)).
/// </summary>
public static class BillingCycles
{
    public static readonly string[] Intervals = ["day", "week", "month", "year"];

    public static DateTimeOffset End(DateTimeOffset anchor, string interval, int cycleNumber) => interval switch
    {
        "day" => anchor.AddDays(cycleNumber),
        "week" => anchor.AddDays(7 * cycleNumber),
        "month" => anchor.AddMonths(cycleNumber),
        "year" => anchor.AddYears(cycleNumber),
        _ => throw new ArgumentOutOfRangeException(nameof(interval), interval, "unknown billing interval"),
    };
}
