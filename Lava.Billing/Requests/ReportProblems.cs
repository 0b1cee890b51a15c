using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Requests.Posting;

namespace Lava.Billing.Requests;

/// <summary>The HTTP edge's answer to each refusal of the posting core (entries of <see cref="Problems"/>).</summary>
public static class ReportProblems
{
    public static ProblemResult Of(ReportRefusal refusal) => refusal switch
    {
        ReportRefusal.KeyRevoked => Problems.Unauthorized(),
        ReportRefusal.IdempotencyConflict r => Problems.IdempotencyConflict(r.RequestId),
        ReportRefusal.MeterNotFound r => Problems.NotFound("meter", r.MeterSlug, "slug"),
        ReportRefusal.CostRequired r => Problems.Validation(new Dictionary<string, string[]>
        {
            ["cost"] = [$"is required: meter '{r.MeterSlug}' charges a percentage of the provider cost"],
        }),
        ReportRefusal.CustomerNotFound r => Problems.NotFound("customer", r.CustomerId),
        ReportRefusal.MeterNotOnPlan r => Problems.Forbidden("meter_not_on_plan", $"Meter '{r.MeterSlug}' is not linked to the customer's active plan."),
        ReportRefusal.HoldNotFound r => Problems.NotFound("hold", r.HoldId),
        ReportRefusal.HoldNotActive r => Problems.Conflict("hold_not_active", $"Hold '{r.HoldId}' is {r.Status}; report without hold_id to record the usage."),
        ReportRefusal.AmountOutOfRange r => Problems.AmountOutOfRange($"Report '{r.RequestId}' would take {r.Crossing} past its bound; nothing was posted."),
        ReportRefusal.LedgerBusy r => Problems.LedgerBusy(r.RetryAfterSeconds),
        // The last of the closed set: a refusal added to it without an arm here fails this cast in every test that meets it.
        _ => Problems.Internal(((ReportRefusal.Failed)refusal).ErrorId),
    };
}
