using Lava.Billing.Infrastructure.Observability;

namespace Lava.Billing.Requests.Posting;

/// <summary>Counts reports by what became of them (<see cref="LavaMetrics"/>, <c>lava_reports_total</c>).</summary>
public static class ReportMetrics
{
    public static void Count(IEnumerable<ReportOutcome> outcomes)
    {
        foreach (var outcome in outcomes)
        {
            switch (outcome)
            {
                case ReportOutcome.Created:
                    LavaMetrics.Reported("posted");
                    break;
                case ReportOutcome.Replayed:
                    LavaMetrics.Reported("replayed");
                    break;
                case ReportOutcome.Refused refused:
                    LavaMetrics.Reported("refused", ReportProblems.Of(refused.Refusal).Code);
                    break;
            }
        }
    }
}
