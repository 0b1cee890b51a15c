namespace Lava.Billing.Requests.Posting;

/// <summary>Everything the lock step read, after its locks; keys lead with the merchant.</summary>
public sealed class LockedState
{
    /// <summary>A report's usage position: the period its usage counts in, as the database decided it.</summary>
    public sealed record UsageRow(DateTimeOffset PeriodStart, DateTimeOffset? CycleStartAt, decimal Quantity);

    public sealed record Stored(byte[] Fingerprint, int StatusCode, string Response);

    public sealed record BillingContext(DateTimeOffset? CycleStartAt, string? PlanId, decimal? TopUpCost, decimal? TopUpCredit, int TopUpsUsed);

    public sealed record HoldState(string CustomerId, string Status, DateTimeOffset ExpiresAt);

    /// <summary>By (merchant, meter, customer or "", when the usage occurred).</summary>
    public Dictionary<(string Merchant, string Meter, string Customer, DateTimeOffset OccurredAt), UsageRow> Usage { get; } = [];
    public Dictionary<(string Merchant, string Account), decimal> Balances { get; } = [];
    public Dictionary<(string Merchant, string Hold), HoldState> Holds { get; } = [];
    public Dictionary<(string Merchant, string Request), Stored> Existing { get; } = [];
    public Dictionary<(string Merchant, string Customer), BillingContext> Customers { get; } = [];
    public HashSet<(string Merchant, string Plan, string Meter)> PlanMeters { get; } = [];
    public HashSet<(string Merchant, string SecretKey)> LiveKeys { get; } = [];
    public Dictionary<(string Merchant, string MeterSlug), (string MeterId, int Version)> LiveMeters { get; } = [];
}
