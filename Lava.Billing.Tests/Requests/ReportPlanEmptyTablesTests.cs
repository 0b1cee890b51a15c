using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Requests;

/// <summary>
/// The posting's plans of <see cref="ReportPlanTests"/> for a ledger whose merchants use neither the gateway's holds nor
/// plans: holds, subscriptions, plan meters and credit bundles analysed while empty, every other table with rows. Such a
/// table stays empty for as long as nobody uses the feature, and the posting runs the plans cached on it
/// (<see cref="Lava.Billing.Requests.Posting.PostingPlans"/>): each must still look its rows up by their keys, so that it
/// stays a lookup when the table fills before the posting notices. Every index is estimated at one row on an empty table;
/// before the renewal, plan-meter and bundle indexes were made usable only by a condition on their own column, these
/// plans read the active subscriptions whole and plan meters and bundles by merchant only. The reads cache their plans
/// on these tables empty (<see cref="Lava.Billing.Requests.Posting.PostingPlans.CachedWhenEmpty"/>).
/// </summary>
public class ReportPlanEmptyTablesTests(LavaApp app) : ReportPlanTests(app)
{
    protected override string History => KeyedHistorySql;

    // The capture of holds is an UPDATE joined to its keys: on holds analysed empty its cached plan read holds_pkey whole
    // on the outer side of the join, so the write caches its plan only on tables analysed with rows.
    protected override IEnumerable<string> PlannedAtEveryExecution => ["write capturing holds"];
}
