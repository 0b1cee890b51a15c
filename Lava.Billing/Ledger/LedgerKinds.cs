namespace Lava.Billing.Ledger;

/// <summary>
/// The kinds of ledger transaction and the references that make each business event unique (docs/ledger.md,
/// "Postings"): a transaction is unique per merchant by (kind, reference), so a second post of one event writes nothing.
/// </summary>
public static class LedgerKinds
{
    /// <summary>A usage report; reference: its request id.</summary>
    public const string Usage = "usage";
    /// <summary>A gateway call that charges nobody; reference: its request id.</summary>
    public const string Gateway = "gateway";
    /// <summary>A credit pack bought for a report that needed it; reference: <see cref="AutoTopUpReference"/>.</summary>
    public const string AutoTopUp = "auto_top_up";
    /// <summary>A bought credit bundle; reference: the purchase's Idempotency-Key.</summary>
    public const string BundlePurchase = "bundle_purchase";
    /// <summary>A subscription cycle's payment and credit; reference: <see cref="CycleReference"/>.</summary>
    public const string CycleGrant = "cycle_grant";
    /// <summary>Cycle credit left at the end of a cycle; reference: <see cref="CycleReference"/>.</summary>
    public const string CycleExpiry = "cycle_expiry";
    /// <summary>Bundle credit left at the end of a cycle; reference: <see cref="CycleReference"/>.</summary>
    public const string BundleExpiry = "bundle_expiry";
    /// <summary>A call made with a spend key, posted with the capture of its hold; reference: its charge id.</summary>
    public const string SpendKeyUsage = "spend_key_usage";

    /// <summary>The <paramref name="pack"/>th (from 1) auto top-up bought for report <paramref name="requestId"/>.</summary>
    public static string AutoTopUpReference(string requestId, int pack) => $"{requestId}#top_up_{pack}";

    public static string CycleReference(string subscriptionId, int cycle) => $"{subscriptionId}:{cycle}";
}
