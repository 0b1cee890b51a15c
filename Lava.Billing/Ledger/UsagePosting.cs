namespace Lava.Billing.Ledger;

/// <summary>One entry of a posting: debit positive, credit negative.</summary>
public readonly record struct Posting(string AccountId, decimal Amount);

/// <summary>
/// The entries of a usage report (docs/ledger.md). Pure, so the drawdown rules are tested without a database.
/// A usage charge C with K credits available: Dr credits min(C, K) (cycle first, then bundle), Dr receivable
/// C − min(C, K), Cr usage revenue C. A known provider cost P: Dr provider cost P, Cr provider payable P.
/// </summary>
public static class UsagePosting
{
    public static List<Posting> For(string? chargedCustomerId, decimal charge, decimal? providerCost,
        decimal cycleAvailable, decimal bundleAvailable)
    {
        if (charge < 0) throw new ArgumentOutOfRangeException(nameof(charge), charge, "a usage charge is never negative");
        var postings = new List<Posting>(5);
        if (chargedCustomerId is not null && charge > 0)
        {
            var fromCycle = Math.Min(charge, Math.Max(cycleAvailable, 0));
            var fromBundle = Math.Min(charge - fromCycle, Math.Max(bundleAvailable, 0));
            var owed = charge - fromCycle - fromBundle;
            if (fromCycle > 0) postings.Add(new(LedgerAccounts.CreditsCycle(chargedCustomerId), fromCycle));
            if (fromBundle > 0) postings.Add(new(LedgerAccounts.CreditsBundle(chargedCustomerId), fromBundle));
            if (owed > 0) postings.Add(new(LedgerAccounts.Receivable(chargedCustomerId), owed));
            postings.Add(new(LedgerAccounts.UsageRevenue, -charge));
        }
        if (providerCost is > 0 and var cost)
        {
            postings.Add(new(LedgerAccounts.ProviderCost, cost));
            postings.Add(new(LedgerAccounts.ProviderPayable, -cost));
        }
        return postings;
    }
}
