using System.Text;
using System.Text.RegularExpressions;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Plans;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Lava.Billing.Credits;

public static partial class CreditsApi
{
    public static IEndpointRouteBuilder MapCreditsApi(this IEndpointRouteBuilder routes)
    {
        routes.MapGet("/v1/customers/{customerId}/balance", Balance).WithTags("Customers").WithName("GetCustomerBalance")
            .WithSummary("What the customer can spend now: credits + unused credit limit − active holds");
        var holds = routes.MapGroup("/v1/holds").WithTags("Holds");
        holds.MapPost("/", CreateHold).WithValidation().WithName("CreateHold").WithSummary("Reserve funds before work runs (402 if unavailable)");
        holds.MapGet("/{holdId}", RetrieveHold).WithName("RetrieveHold").WithSummary("Retrieve a hold");
        holds.MapDelete("/{holdId}", VoidHold).WithName("VoidHold").WithSummary("Release a hold without charging");
        routes.MapPost("/v1/credit_bundles/{creditBundleId}/purchases", Purchase).WithValidation().WithTags("Credit bundles")
            .WithName("PurchaseCreditBundle").WithSummary("Record a bought credit pack (idempotent on the Idempotency-Key header)");
        return routes;
    }

    public static async Task<Results<Ok<CustomerBalanceResponse>, ProblemResult>> Balance(
        Caller caller, string customerId, CreditStore credits, TimeProvider clock, CancellationToken ct) =>
        await credits.BalanceAsync(caller.MerchantId, customerId, clock.GetUtcNow(), ct) is { } balance
            ? TypedResults.Ok(balance)
            : Problems.NotFound("customer", customerId);

    public static async Task<Results<Created<HoldResponse>, ProblemResult>> CreateHold(
        Caller caller, CreateHoldBody body, CreditStore credits, Meters.MeterStore meters, TimeProvider clock, CancellationToken ct)
    {
        string? meterId = null;
        if (body.MeterSlug is { } slug)
        {
            if (await meters.FindLivePriceAsync(caller.MerchantId, slug, ct) is not { } meter) return Problems.NotFound("meter", slug, "slug");
            meterId = meter.MeterId;
        }
        return await credits.CreateHoldAsync(caller.MerchantId, body.CustomerId!, meterId, body.Amount!.Value,
                TimeSpan.FromSeconds(body.ExpiresIn ?? 600), clock.GetUtcNow(), ct) switch
        {
            CreditStore.HoldOutcome.Created c => TypedResults.Created($"/v1/holds/{c.Hold.HoldId}", c.Hold),
            CreditStore.HoldOutcome.Insufficient i => Problems.InsufficientCredits(
                $"The customer can spend {i.Available} now; the hold asks for {body.Amount.Value.ToString(System.Globalization.CultureInfo.InvariantCulture)}."),
            _ => Problems.NotFound("customer", body.CustomerId!),
        };
    }

    public static async Task<Results<Ok<HoldResponse>, ProblemResult>> RetrieveHold(
        Caller caller, string holdId, CreditStore credits, TimeProvider clock, CancellationToken ct) =>
        await credits.FindHoldAsync(caller.MerchantId, holdId, clock.GetUtcNow(), ct) is { } hold
            ? TypedResults.Ok(hold)
            : Problems.NotFound("hold", holdId);

    public static async Task<Results<Ok<HoldResponse>, ProblemResult>> VoidHold(
        Caller caller, string holdId, CreditStore credits, TimeProvider clock, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        if (await credits.VoidHoldAsync(caller.MerchantId, holdId, now, ct) is { } voided) return TypedResults.Ok(voided);
        return await credits.FindHoldAsync(caller.MerchantId, holdId, now, ct) is { } hold
            ? Problems.Conflict("hold_not_active", $"Hold '{holdId}' is {hold.Status}.")
            : Problems.NotFound("hold", holdId);
    }

    [GeneratedRegex(@"^[ -~]{1,255}\z")] private static partial Regex IdempotencyKeyShape();

    public static async Task<IResult> Purchase(Caller caller, string creditBundleId, PurchaseBundleBody body, HttpContext http,
        PlanStore plans, CreditStore credits, TimeProvider clock, CancellationToken ct)
    {
        var key = http.Request.Headers["Idempotency-Key"].ToString();
        if (!IdempotencyKeyShape().IsMatch(key))
        {
            return Problems.Validation(new Dictionary<string, string[]>
            {
                ["Idempotency-Key"] = ["header is required: 1 to 255 printable ASCII characters"],
            });
        }
        var outcome = await credits.FindPurchaseAsync(caller.MerchantId, key, creditBundleId, body.CustomerId!, ct);
        if (outcome is null)
        {
            var bundle = await plans.FindLiveBundleAsync(caller.MerchantId, creditBundleId, ct);
            if (bundle is null) return Problems.NotFound("credit bundle", creditBundleId);
            outcome = await credits.PurchaseAsync(caller.MerchantId, bundle, body.CustomerId!, key, clock.GetUtcNow(), ct);
        }
        switch (outcome)
        {
            case CreditStore.PurchaseOutcome.Created c:
                return Results.Content(c.Response, "application/json", Encoding.UTF8, StatusCodes.Status201Created);
            case CreditStore.PurchaseOutcome.Replayed r:
                http.Response.Headers["Idempotent-Replayed"] = "true";
                return Results.Content(r.Response, "application/json", Encoding.UTF8, StatusCodes.Status201Created);
            case CreditStore.PurchaseOutcome.Refused f:
                return f.Problem;
            default:
                throw new InvalidOperationException("unexpected purchase outcome");
        }
    }
}
