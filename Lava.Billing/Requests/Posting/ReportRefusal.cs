namespace Lava.Billing.Requests.Posting;

/// <summary>
/// Why a report was not posted: a closed set (the constructor is private), answered by the poster and the planner and
/// mapped to a problem response only at the HTTP edge (<see cref="ReportProblems"/>). Nothing was posted for a refused report.
/// </summary>
public abstract record ReportRefusal
{
    private ReportRefusal()
    {
    }

    /// <summary>The key it was reported with was revoked after auth let the call in.</summary>
    public sealed record KeyRevoked : ReportRefusal;

    /// <summary>The request id was used before (or earlier in the same batch) with another payload.</summary>
    public sealed record IdempotencyConflict(string RequestId) : ReportRefusal;

    public sealed record MeterNotFound(string MeterSlug) : ReportRefusal;

    /// <summary>The meter charges a percentage of the provider cost, and the report carries none.</summary>
    public sealed record CostRequired(string MeterSlug) : ReportRefusal;

    public sealed record CustomerNotFound(string CustomerId) : ReportRefusal;

    /// <summary>Billing disabled, and the meter is not linked to the customer's active plan.</summary>
    public sealed record MeterNotOnPlan(string MeterSlug) : ReportRefusal;

    /// <summary>No such hold, or the hold is another customer's.</summary>
    public sealed record HoldNotFound(string HoldId) : ReportRefusal;

    public sealed record HoldNotActive(string HoldId, string Status) : ReportRefusal;

    /// <summary>The database refused a bound the report would cross (<c>Crossing</c> says which).</summary>
    public sealed record AmountOutOfRange(string RequestId, string Crossing) : ReportRefusal;

    /// <summary>The balances it moves stayed locked by other work; the same request id is safe to send again.</summary>
    public sealed record LedgerBusy(int RetryAfterSeconds) : ReportRefusal;

    /// <summary>A bug or an unexpected refusal of the database; the log has the error id with the request id.</summary>
    public sealed record Failed(string ErrorId) : ReportRefusal;
}
