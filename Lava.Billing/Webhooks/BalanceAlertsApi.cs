using System.Globalization;
using System.Text.Json.Serialization;
using FluentValidation;
using Lava.Billing.Credits;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Lava.Billing.Webhooks;

public sealed record BalanceAlertParams
{
    /// <summary>customer.balance.low fires when credits remaining − receivable goes below this; null: never.</summary>
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? LowBalanceThreshold { get; init; }
}

public sealed record RestBalanceAlert(string CustomerId, string? LowBalanceThreshold, bool BelowThreshold, bool CreditsExhausted)
{
    public static RestBalanceAlert From(BalanceAlertRow r) =>
        new(r.CustomerId, Money.Format(r.LowBalanceThreshold), r.BelowThreshold, r.CreditsExhausted);
}

public sealed class BalanceAlertParamsValidator : AbstractValidator<BalanceAlertParams>
{
    public BalanceAlertParamsValidator() =>
        RuleFor(p => p.LowBalanceThreshold).InclusiveBetween(-Money.Max, Money.Max)
            .Must(a => a is null || decimal.Round(a.Value, Money.Scale) == a.Value).WithMessage("must have at most 10 decimal places");
}

/// <summary>The customer's low-balance threshold, which the customer.balance.low webhook event watches.</summary>
public static class BalanceAlertsApi
{
    public static IEndpointRouteBuilder MapBalanceAlertsApi(this IEndpointRouteBuilder routes)
    {
        routes.MapGet("/v1/customers/{customerId}/balance_alert", Retrieve).WithTags("Webhooks").WithName("RetrieveBalanceAlert")
            .WithSummary("The customer's low-balance threshold and what was last announced");
        routes.MapPut("/v1/customers/{customerId}/balance_alert", Set).WithValidation().WithTags("Webhooks").WithName("SetBalanceAlert")
            .WithSummary("Set or clear the customer's low-balance threshold");
        return routes;
    }

    public static async Task<Results<Ok<RestBalanceAlert>, ProblemResult>> Retrieve(
        Caller caller, string customerId, BalanceAlertStore alerts, CancellationToken ct) =>
        await alerts.FindAsync(caller.MerchantId, customerId, ct) is { } row
            ? TypedResults.Ok(RestBalanceAlert.From(row))
            : Problems.NotFound("customer", customerId);

    public static async Task<Results<Ok<RestBalanceAlert>, ProblemResult>> Set(
        Caller caller, string customerId, BalanceAlertParams body, BalanceAlertStore alerts, CreditStore credits, TimeProvider clock,
        CancellationToken ct)
    {
        if (await credits.BalanceAsync(caller.MerchantId, customerId, clock.GetUtcNow(), ct) is not { } balance)
            return Problems.NotFound("customer", customerId);
        var creditsRemaining = decimal.Parse(balance.CreditsRemaining, CultureInfo.InvariantCulture);
        var net = creditsRemaining - decimal.Parse(balance.Receivable, CultureInfo.InvariantCulture);
        var row = await alerts.SetAsync(caller.MerchantId, customerId, body.LowBalanceThreshold,
            below: body.LowBalanceThreshold is { } t && net < t, hasCredits: creditsRemaining > 0, ct);
        return TypedResults.Ok(RestBalanceAlert.From(row));
    }
}
