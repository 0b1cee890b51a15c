namespace Lava.Billing.Requests.Posting;

/// <summary>Billing settings (configuration section <c>Billing</c>).</summary>
public sealed class BillingOptions
{
    public int MaxAutoTopUpsPerCycle { get; init; } = 3;

    /// <summary>
    /// Whether the service analyses a table the posting reads once it holds rows its statistics have not counted
    /// (<see cref="PostingPlans"/>), rather than waiting for autovacuum. On by default; the test host turns it off, its plan
    /// tests holding the plans of databases in given states of their statistics.
    /// </summary>
    public bool AnalyseUnsettledTables { get; init; } = true;
}
