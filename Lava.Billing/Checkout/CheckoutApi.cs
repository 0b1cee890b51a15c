using System.Security.Cryptography;
using Lava.Billing.Customers;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Plans;
using Lava.Billing.Subscriptions;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Lava.Billing.Checkout;

public static class CheckoutApi
{
    public static RouteGroupBuilder MapCheckoutApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/checkout_sessions").WithTags("Checkout sessions");
        group.MapPost("/", Create).WithValidation().WithName("CreateCheckoutSession")
            .WithSummary("Start a checkout for a subscription or a credit bundle");
        group.MapGet("/{checkoutSessionId}", Retrieve).WithName("RetrieveCheckoutSession").WithSummary("Retrieve a checkout session");
        group.MapPost("/{checkoutSessionId}/complete", Complete).WithValidation().WithName("CompleteCheckoutSession")
            .WithSummary("Record the payment that paid for a session: posts it and delivers what was bought");
        return group;
    }

    private const string TokenAlphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    /// <summary>32 base62 characters (190 random bits): the browser's handle on the session.</summary>
    public static string NewToken() => "cst_" + RandomNumberGenerator.GetString(TokenAlphabet, 32);

    /// <summary>Test keys make test sessions, which the service's test page may complete.</summary>
    private static bool IsTestKey(HttpContext http) =>
        Auth.BearerToken(http.Request.Headers.Authorization.ToString())?.StartsWith("aks_test_", StringComparison.Ordinal) == true;

    private static string? TestPageUrl(HttpContext http, CheckoutOptions options, string token) =>
        options.TestPage ? $"{http.Request.Scheme}://{http.Request.Host}{CheckoutPage.Path}/{token}" : null;

    public static async Task<Results<Created<RestCheckoutSession>, ProblemResult>> Create(
        Caller caller, CreateCheckoutSessionParams body, HttpContext http, CheckoutStore sessions, PlanStore plans, CustomerStore customers,
        CheckoutOptions options, TimeProvider clock, CancellationToken ct)
    {
        if (body.CustomerId is { } customerId && !await customers.ExistsAsync(caller.MerchantId, customerId, ct))
            return Problems.NotFound("customer", customerId);
        decimal amount;
        if (body.CheckoutMode == CheckoutModes.Subscription)
        {
            if (await plans.FindLiveAsync(caller.MerchantId, body.PlanId!, ct) is not { } plan) return Problems.NotFound("plan", body.PlanId!);
            amount = plan.PeriodAmount;
        }
        else
        {
            if (await plans.FindLiveBundleAsync(caller.MerchantId, body.CreditBundleId!, ct) is not { } bundle)
                return Problems.NotFound("credit bundle", body.CreditBundleId!);
            amount = bundle.Cost;
        }
        var now = clock.GetUtcNow();
        var token = NewToken();
        var row = await sessions.CreateAsync(caller.MerchantId,
            new NewCheckoutSession(body.CheckoutMode!, body.OriginUrl!, body.CustomerId, body.PlanId, body.CreditBundleId, amount, IsTestKey(http)),
            token, now, now.AddMinutes(options.SessionLifetimeMinutes), ct);
        return TypedResults.Created($"/v1/checkout_sessions/{row.CheckoutSessionId}",
            RestCheckoutSession.From(row, now, token, TestPageUrl(http, options, token)));
    }

    public static async Task<Results<Ok<RestCheckoutSession>, ProblemResult>> Retrieve(
        Caller caller, string checkoutSessionId, CheckoutStore sessions, TimeProvider clock, CancellationToken ct) =>
        await sessions.FindAsync(caller.MerchantId, checkoutSessionId, ct) is { } row
            ? TypedResults.Ok(RestCheckoutSession.From(row, clock.GetUtcNow()))
            : Problems.NotFound("checkout session", checkoutSessionId);

    public static async Task<IResult> Complete(
        Caller caller, string checkoutSessionId, CompleteCheckoutSessionParams body, HttpContext http, CheckoutStore sessions,
        TimeProvider clock, CancellationToken ct)
    {
        var outcome = await sessions.CompleteAsync(caller.MerchantId, checkoutSessionId, body.PaymentReference!, body.Amount, clock.GetUtcNow(), ct);
        return Answer(outcome, checkoutSessionId, body.PaymentReference!, http, clock.GetUtcNow());
    }

    /// <summary>The HTTP answer to a completion. The token is not in it: only the creating answer has it.</summary>
    public static IResult Answer(CheckoutStore.CompleteOutcome outcome, string sessionId, string reference, HttpContext http,
        DateTimeOffset now)
    {
        switch (outcome)
        {
            case CheckoutStore.CompleteOutcome.Completed c:
                return TypedResults.Ok(RestCheckoutSession.From(c.Session, now));
            case CheckoutStore.CompleteOutcome.Replayed r:
                http.Response.Headers["Idempotent-Replayed"] = "true";
                return TypedResults.Ok(RestCheckoutSession.From(r.Session, now));
            case CheckoutStore.CompleteOutcome.NotFound:
                return Problems.NotFound("checkout session", sessionId);
            case CheckoutStore.CompleteOutcome.Expired e:
                return Problems.Gone("checkout_session_expired",
                    $"Checkout session '{sessionId}' expired at {e.Session.ExpiresAt:yyyy-MM-ddTHH:mm:ssZ}; create a new one.");
            case CheckoutStore.CompleteOutcome.OtherPayment:
                return Problems.Conflict("checkout_session_completed",
                    $"Checkout session '{sessionId}' was completed by another payment than '{reference}'.");
            case CheckoutStore.CompleteOutcome.PaymentUsed:
                return Problems.Conflict("payment_reference_used", $"Payment '{reference}' already completed another checkout session.");
            case CheckoutStore.CompleteOutcome.AmountMismatch m:
                return Problems.Unprocessable("amount_mismatch",
                    $"Checkout session '{sessionId}' costs {Money.Format(m.Expected)}; nothing was posted.");
            case CheckoutStore.CompleteOutcome.BundleNotFound b:
                return Problems.NotFound("credit bundle", b.CreditBundleId);
            case CheckoutStore.CompleteOutcome.PurchaseRefused p:
                return p.Problem;
            case CheckoutStore.CompleteOutcome.SubscriptionRefused s:
                return s.Outcome switch
                {
                    SubscriptionStore.CreateOutcome.CustomerNotFound => Problems.Unprocessable("customer_deleted",
                        "The session's customer was deleted after the session was made; nothing was posted."),
                    SubscriptionStore.CreateOutcome.PlanNotFound => Problems.Unprocessable("plan_deleted",
                        "The session's plan was deleted after the session was made; nothing was posted."),
                    SubscriptionStore.CreateOutcome.AlreadyActive => Problems.Conflict("subscription_exists",
                        "The customer already has an active subscription; cancel it before subscribing to another plan."),
                    _ => Problems.AmountOutOfRange(
                        "The first cycle's credit would take the customer's credit balance past its bound; nothing was posted."),
                };
            default:
                throw new InvalidOperationException("unexpected completion outcome");
        }
    }
}
