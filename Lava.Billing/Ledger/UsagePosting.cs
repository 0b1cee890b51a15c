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
    /// <summary>
    /// Whether a meter's charge may draw plan credits: with an active plan only meters linked to it may; without one,
    /// any credits are drawn. The report path and every affordability check (holds, the gateway) ask this same rule.
    /// </summary>
    public static bool PlanCreditsUsable(bool hasActivePlan, bool meterOnPlan) => !hasActivePlan || meterOnPlan;

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

    /// <summary>
    /// A bought credit pack: the payer (payments clearing, or the customer's receivable for an auto top-up) is debited
    /// the price, bundle credits are credited the pack's credit; a margin is plan revenue, bonus credit an expense.
    /// </summary>
    public static List<Posting> BundlePurchase(string customerId, string payerAccount, decimal cost, decimal creditAmount)
    {
        var postings = new List<Posting>(3);
        if (cost > 0) postings.Add(new(payerAccount, cost));
        postings.Add(new(LedgerAccounts.CreditsBundle(customerId), -creditAmount));
        if (cost > creditAmount) postings.Add(new(LedgerAccounts.PlanRevenue, -(cost - creditAmount)));
        if (creditAmount > cost) postings.Add(new(LedgerAccounts.BonusCreditExpense, creditAmount - cost));
        return postings;
    }

    /// <summary>A cycle's payment: the period amount is paid; the included credit becomes cycle credits, the rest is plan revenue.</summary>
    public static List<Posting> CycleGrant(string customerId, decimal periodAmount, decimal includedCredit)
    {
        var postings = new List<Posting>(3);
        if (periodAmount > 0) postings.Add(new(LedgerAccounts.PaymentsClearing, periodAmount));
        if (includedCredit > 0) postings.Add(new(LedgerAccounts.CreditsCycle(customerId), -includedCredit));
        if (periodAmount > includedCredit) postings.Add(new(LedgerAccounts.PlanRevenue, -(periodAmount - includedCredit)));
        return postings;
    }

    /// <summary>Unused credit at the end of a cycle expires into breakage revenue.</summary>
    public static List<Posting> Expiry(string creditsAccount, decimal remaining) =>
        remaining > 0 ? [new(creditsAccount, remaining), new(LedgerAccounts.BreakageRevenue, -remaining)] : [];

    /// <summary>How many packs of <paramref name="packCredit"/> cover the shortfall, within what the cycle still allows.</summary>
    public static int TopUpsNeeded(decimal charge, decimal available, decimal packCredit, int remainingAllowed)
    {
        if (charge <= available || packCredit <= 0 || remainingAllowed <= 0) return 0;
        var needed = (int)Math.Min(Math.Ceiling((charge - available) / packCredit), int.MaxValue);
        return Math.Min(needed, remainingAllowed);
    }
}
