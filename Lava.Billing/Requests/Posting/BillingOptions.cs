namespace Lava.Billing.Requests.Posting;

/// <summary>Billing settings (configuration section <c>Billing</c>).</summary>
public sealed class BillingOptions
{
    public int MaxAutoTopUpsPerCycle { get; init; } = 3;
}
