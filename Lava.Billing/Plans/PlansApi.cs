using System.Text.Json;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Merchants;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Lava.Billing.Plans;

public static class PlansApi
{
    public static RouteGroupBuilder MapPlansApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/plans").WithTags("Plans");
        group.MapGet("/", List).WithName("ListPlans").WithSummary("List live plans");
        group.MapPost("/", Create).WithValidation()
            .WithName("CreatePlan").WithSummary("Create a plan with its linked meters and credit bundles");
        group.MapGet("/{planId}", Retrieve).WithName("RetrievePlan").WithSummary("A live plan");
        group.MapPatch("/{planId}", Update).WithValidation()
            .WithName("UpdatePlan").WithSummary("Change a plan's name, rollovers, included credit, meters or bundles");
        group.MapDelete("/{planId}", Delete)
            .WithName("DeletePlan").WithSummary("Delete a plan no active subscription is on");
        return group;
    }

    public static async Task<Results<Ok<ListResponse<RestPlan>>, ProblemResult>> List(
        Caller caller, PlanStore plans, string? cursor, string? limit, CancellationToken ct)
    {
        if (!Paging.TryRead(cursor, limit, out var page, out var problem)) return problem!;
        var rows = await plans.ListAsync(caller.MerchantId, page.After, page.Limit + 1, ct);
        return TypedResults.Ok(Paging.Envelope(rows, page.Limit, p => p.PlanId, p => p));
    }

    public static async Task<Results<Created<RestPlan>, ProblemResult>> Create(
        Caller caller, PlanStore plans, CreatePlanParams body, CancellationToken ct)
    {
        var plan = new NewPlan(body.Name!, body.PeriodAmount!.Value, body.IncludedCredit ?? body.PeriodAmount.Value, body.BillingInterval!,
            body.RolloverType ?? PlanVocabulary.NoRollover, body.BundleRolloverType ?? PlanVocabulary.NoRollover,
            body.DefaultAutoTopUpBundleIndex, body.MeterIds ?? [], body.CreditBundles ?? []);
        return await plans.CreateAsync(caller.MerchantId, plan, ct) switch
        {
            PlanWrite.Saved s => TypedResults.Created($"/v1/plans/{s.Plan.PlanId}", s.Plan),
            PlanWrite.Invalid i => Problems.Validation(i.Errors),
            var other => throw new InvalidOperationException($"unexpected outcome {other}"),
        };
    }

    public static async Task<Results<Ok<RestPlan>, ProblemResult>> Retrieve(
        Caller caller, PlanStore plans, string planId, CancellationToken ct) =>
        await plans.FindAsync(caller.MerchantId, planId, ct) is { } plan ? TypedResults.Ok(plan) : Problems.NotFound("plan", planId);

    public static async Task<Results<Ok<RestPlan>, ProblemResult>> Update(
        Caller caller, PlanStore plans, string planId, UpdatePlanParams body, CancellationToken ct)
    {
        // Subscriptions were sold on these terms; a different price or interval is a new plan.
        if (body.PeriodAmount is { ValueKind: not JsonValueKind.Null }) return Problems.ImmutableField("period_amount");
        if (body.BillingInterval is { ValueKind: not JsonValueKind.Null }) return Problems.ImmutableField("billing_interval");
        var changes = new PlanStore.PlanChanges(body.Name, body.RolloverType, body.BundleRolloverType, body.IncludedCredit,
            body.DefaultAutoTopUpBundleId, body.MeterIds, body.CreditBundles);
        return await plans.UpdateAsync(caller.MerchantId, planId, changes, ct) switch
        {
            PlanWrite.Saved s => TypedResults.Ok(s.Plan),
            PlanWrite.Invalid i => Problems.Validation(i.Errors),
            PlanWrite.NotFound => Problems.NotFound("plan", planId),
            var other => throw new InvalidOperationException($"unexpected outcome {other}"),
        };
    }

    public static async Task<Results<Ok<DeletedResponse>, ProblemResult>> Delete(
        Caller caller, PlanStore plans, string planId, CancellationToken ct) =>
        await plans.DeleteAsync(caller.MerchantId, planId, ct) switch
        {
            PlanWrite.Deleted => TypedResults.Ok(new DeletedResponse(planId, true)),
            PlanWrite.InUse => Problems.Conflict("plan_in_use",
                $"Plan '{planId}' has active subscriptions: cancel them before deleting the plan."),
            PlanWrite.NotFound => Problems.NotFound("plan", planId),
            var other => throw new InvalidOperationException($"unexpected outcome {other}"),
        };
}
