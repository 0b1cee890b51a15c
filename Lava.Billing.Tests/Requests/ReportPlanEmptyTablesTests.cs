using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Requests;

/// <summary>
/// The posting's plans of <see cref="ReportPlanTests"/> for a ledger whose merchants use neither the gateway's holds nor
/// plans: holds, subscriptions, plan meters and credit bundles analysed while empty, every other table with rows. Such a
/// table stays empty for as long as nobody uses the feature, and the posting runs the plans cached on it
/// (<see cref="Lava.Billing.Requests.Posting.PostingPlans"/>): each must still look its rows up by their keys, so that it
/// stays a lookup when the table fills before the posting notices. Every index is estimated at one row on an empty table;
/// before the renewal, plan-meter and bundle indexes were made usable only by a condition on their own column, these
/// plans read the active subscriptions whole and plan meters and bundles by merchant only.
/// </summary>
public class ReportPlanEmptyTablesTests(LavaApp app) : ReportPlanTests(app)
{
    protected override string History => KeyedHistorySql;

    protected override IEnumerable<string> PlannedAtEveryExecution => ["write capturing holds"];
}
