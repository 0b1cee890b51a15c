using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Requests;

/// <summary>
/// The posting's plans of <see cref="ReportPlanTests"/> on a young ledger analysed with a few rows in each table the
/// posting reads (50 requests, ledger transactions, usage totals, holds and so on; its customers and their balances as
/// in the other variants): the size at which the service analyses a table itself (<c>PostingPlans.AnalyseFromRows</c>),
/// and the one autovacuum's default threshold analyses a table at. Every statement but the write that captures holds
/// runs its cached plan here, and each such plan still looks its rows up by their keys. The capture's cached plan read
/// the active holds' index whole at this size, so it waits for holds analysed with more rows
/// (<c>PostingPlans.HoldsForCachedCapture</c>): its generic plan is checked on the larger ledger of the base class.
/// </summary>
public class ReportPlanSmallLedgerTests(LavaApp app) : ReportPlanTests(app)
{
    protected override IEnumerable<string> PlannedAtEveryExecution => ["write capturing holds"];

    protected override string History => HistorySql
        .Replace("generate_series(1, 5000)", "generate_series(1, 50)", StringComparison.Ordinal)
        .Replace("generate_series(1, 400)", "generate_series(1, 50)", StringComparison.Ordinal)
        .Replace("generate_series(601, 1200)", "generate_series(1151, 1200)", StringComparison.Ordinal);
}

/// <summary>
/// The same young ledger with holds at the size from which the write that captures holds runs its cached plan
/// (<c>PostingPlans.HoldsForCachedCapture</c>, 1,000 rows): every statement runs its cached plan, and the capture's looks
/// its holds up by their keys.
/// </summary>
public class ReportPlanSmallLedgerThousandHoldsTests(LavaApp app) : ReportPlanTests(app)
{
    protected override string History =>
        KeyedHistorySql
            .Replace("generate_series(1, 5000)", "generate_series(1, 50)", StringComparison.Ordinal)
            .Replace("generate_series(1, 400)", "generate_series(1, 50)", StringComparison.Ordinal)
        + "\n" +
        PlanHistorySql
            .Replace("generate_series(1, 5000)", "generate_series(1, 1000)", StringComparison.Ordinal)
            .Replace("generate_series(1, 400)", "generate_series(1, 50)", StringComparison.Ordinal)
            .Replace("generate_series(601, 1200)", "generate_series(1151, 1200)", StringComparison.Ordinal);
}
