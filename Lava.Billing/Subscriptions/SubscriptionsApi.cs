using Lava.Billing.Infrastructure.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;

namespace Lava.Billing.Subscriptions;

public static class SubscriptionsApi
{
    public static RouteGroupBuilder MapSubscriptionsApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/subscriptions").WithTags("Subscriptions");
        group.MapPost("/", Create).WithValidation().WithName("CreateSubscription")
            .WithSummary("Subscribe a customer to a plan; records the first cycle's payment and grants its credit");
        group.MapGet("/", List).WithName("ListSubscriptions").WithSummary("List subscriptions (status active|cancelled|all, customer_id)");
        group.MapGet("/{subscriptionId}", Retrieve).WithName("RetrieveSubscription").WithSummary("Retrieve a subscription");
        group.MapPatch("/{subscriptionId}", Update).WithValidation().WithName("UpdateSubscription").WithSummary("Set the auto top-up bundle");
        group.MapDelete("/{subscriptionId}", Cancel).WithName("CancelSubscription").WithSummary("Cancel at the end of the current cycle");
        routes.MapGet("/v1/customers/{customerId}/subscription", ForCustomer).WithTags("Customers")
            .WithName("GetCustomerSubscription").WithSummary("The customer's active subscription with remaining credits, or null");
        return group;
    }

    public static async Task<Results<Created<SubscriptionEnvelope>, ProblemResult>> Create(
        Caller caller, CreateSubscriptionBody body, SubscriptionStore subscriptions, TimeProvider clock, CancellationToken ct)
    {
        var (outcome, id) = await subscriptions.CreateAsync(caller.MerchantId, body.CustomerId!, body.PlanId!, clock.GetUtcNow(), ct);
        return outcome switch
        {
            SubscriptionStore.CreateOutcome.CustomerNotFound => Problems.NotFound("customer", body.CustomerId!),
            SubscriptionStore.CreateOutcome.PlanNotFound => Problems.NotFound("plan", body.PlanId!),
            SubscriptionStore.CreateOutcome.AlreadyActive => Problems.Conflict("subscription_exists",
                "The customer already has an active subscription; cancel it before subscribing to another plan."),
            SubscriptionStore.CreateOutcome.AmountOutOfRange => Problems.AmountOutOfRange(
                "The first cycle's credit would take the customer's credit balance past its bound; nothing was posted."),
            _ => TypedResults.Created($"/v1/subscriptions/{id}",
                new SubscriptionEnvelope(await subscriptions.FindAsync(caller.MerchantId, id!, ct))),
        };
    }

    public static async Task<Results<Ok<ListResponse<RestSubscription>>, ProblemResult>> List(
        Caller caller, SubscriptionStore subscriptions, string? cursor, string? limit, string? status,
        [FromQuery(Name = "customer_id")] string? customerId, CancellationToken ct)
    {
        if (!Paging.TryRead(cursor, limit, out var page, out var problem)) return problem!;
        if (status is not (null or "" or "all" or "active" or "cancelled"))
            return Problems.Validation(new Dictionary<string, string[]> { ["status"] = ["must be active, cancelled or all"] });
        var rows = await subscriptions.ListAsync(caller.MerchantId, status is null or "" or "all" ? null : status,
            string.IsNullOrEmpty(customerId) ? null : customerId, page.After, page.Limit + 1, ct);
        return TypedResults.Ok(Paging.Envelope(rows, page.Limit, s => s.SubscriptionId, s => s));
    }

    public static async Task<Results<Ok<SubscriptionEnvelope>, ProblemResult>> Retrieve(
        Caller caller, string subscriptionId, SubscriptionStore subscriptions, CancellationToken ct) =>
        await subscriptions.FindAsync(caller.MerchantId, subscriptionId, ct) is { } s
            ? TypedResults.Ok(new SubscriptionEnvelope(s))
            : Problems.NotFound("subscription", subscriptionId);

    public static async Task<Results<Ok<SuccessResponse>, ProblemResult>> Update(
        Caller caller, string subscriptionId, UpdateSubscriptionBody body, SubscriptionStore subscriptions, CancellationToken ct)
    {
        if (await subscriptions.FindAsync(caller.MerchantId, subscriptionId, ct) is not { Status: "active" })
            return Problems.NotFound("active subscription", subscriptionId);
        if (!body.AutoTopUpBundleId.IsSet) return TypedResults.Ok(new SuccessResponse(true));
        return await subscriptions.SetAutoTopUpAsync(caller.MerchantId, subscriptionId, body.AutoTopUpBundleId.Value, ct)
            ? TypedResults.Ok(new SuccessResponse(true))
            : Problems.Validation(new Dictionary<string, string[]>
            {
                ["auto_top_up_bundle_id"] = ["must be a credit bundle of the subscription's plan"],
            });
    }

    public static async Task<Results<Ok<SuccessResponse>, ProblemResult>> Cancel(
        Caller caller, string subscriptionId, SubscriptionStore subscriptions, CancellationToken ct) =>
        await subscriptions.CancelAtCycleEndAsync(caller.MerchantId, subscriptionId, ct)
            ? TypedResults.Ok(new SuccessResponse(true))
            : Problems.NotFound("active subscription", subscriptionId);

    public static async Task<Results<Ok<SubscriptionEnvelope>, ProblemResult>> ForCustomer(
        Caller caller, string customerId, SubscriptionStore subscriptions, Customers.CustomerStore customers, CancellationToken ct)
    {
        if (!await customers.ExistsAsync(caller.MerchantId, customerId, ct)) return Problems.NotFound("customer", customerId);
        return TypedResults.Ok(new SubscriptionEnvelope(await subscriptions.FindActiveForCustomerAsync(caller.MerchantId, customerId, ct)));
    }
}
