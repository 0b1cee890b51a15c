using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Requests;

/// <summary>
/// The posting's plans of <see cref="ReportPlanTests"/> on a ledger analysed before its first report: the merchant's
/// customers, accounts, balances, meters and keys hold rows, every other table is analysed empty (as a database that
/// was analysed by hand, or restored and analysed, right after it was created). Only the reads of the tables of optional
/// features may cache their plans on them empty; where requests, ledger transactions or usage totals were empty when
/// the plan was made, the cached replay read looked requests up through another index by merchant only and the write
/// read the usage totals whole, so those statements are planned for their keys until the tables are analysed with rows.
/// </summary>
public class ReportPlanFreshLedgerTests(LavaApp app) : ReportPlanTests(app)
{
    protected override string History => "SELECT 1;";

    protected override bool RequestsHoldRows => false;

    protected override IEnumerable<string> PlannedAtEveryExecution =>
        ["lock usage totals", "read usage totals", "read replays", "read customers", "write", "write capturing holds"];
}
