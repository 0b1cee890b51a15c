using Lava.Billing.Infrastructure.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace Lava.Billing.Plans;

/// <summary>Credit bundles are created, changed and deleted through their plan; here they are only read.</summary>
public static class CreditBundlesApi
{
    public static RouteGroupBuilder MapCreditBundlesApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/credit_bundles").WithTags("Credit bundles");
        group.MapGet("/", List).WithName("ListCreditBundles").WithSummary("List live credit bundles, optionally of one plan");
        group.MapGet("/{creditBundleId}", Retrieve).WithName("RetrieveCreditBundle").WithSummary("A live credit bundle");
        return group;
    }

    public static async Task<Results<Ok<ListResponse<RestCreditBundle>>, ProblemResult>> List(
        Caller caller, PlanStore plans, string? cursor, string? limit, [FromQuery(Name = "plan_id")] string? planId, CancellationToken ct)
    {
        if (!Paging.TryRead(cursor, limit, out var page, out var problem)) return problem!;
        var rows = await plans.ListBundlesAsync(caller.MerchantId, string.IsNullOrEmpty(planId) ? null : planId, page.After, page.Limit + 1, ct);
        return TypedResults.Ok(Paging.Envelope(rows, page.Limit, b => b.CreditBundleId, b => b));
    }

    public static async Task<Results<Ok<RestCreditBundle>, ProblemResult>> Retrieve(
        Caller caller, PlanStore plans, string creditBundleId, CancellationToken ct) =>
        await plans.FindBundleAsync(caller.MerchantId, creditBundleId, ct) is { } bundle
            ? TypedResults.Ok(bundle)
            : Problems.NotFound("credit bundle", creditBundleId);
}
