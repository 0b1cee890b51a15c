using System.Text.Json;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Ledger;
using Lava.Billing.Meters;
using Lava.Billing.Pricing;
using Lava.Billing.Requests;
using Lava.Billing.Credits;
using Lava.Billing.Subscriptions;

namespace Lava.Billing.Forward;

/// <summary>One gateway call, as billing sees it (with the hold taken for it, if any).</summary>
public sealed record ForwardCall(
    Caller Caller,
    ForwardToken Token,
    ForwardMode Mode,
    string RequestId,
    Uri Upstream,
    ApiFormat Format,
    string? Model,
    ModelPrice? Price,
    IReadOnlyDictionary<string, string> Metadata,
    string? HoldId = null);

/// <summary>The answer before the call: a refusal, or go ahead (holding the worst case for a customer).</summary>
public sealed record ForwardAdmission(ProblemResult? Refusal, string? HoldId)
{
    public static readonly ForwardAdmission Go = new(null, null);

    public static ForwardAdmission Refuse(ProblemResult problem) => new(problem, null);
}

/// <summary>The worst case before the call: the prompt's estimated size and the most output it asked for.</summary>
public sealed record UsageEstimate(NormalizedUsage Input, long? MaxOutputTokens);

/// <summary>What is billed after the call. <see cref="Estimated"/>: the provider's own count never arrived.</summary>
public sealed record BilledUsage(NormalizedUsage Usage, decimal? ProviderCost, bool Estimated);

/// <summary>
/// The billing seam of the gateway: asked once before the provider is called (it may refuse), told once after.
/// </summary>
public interface IForwardBilling
{
    /// <summary>Go ahead (perhaps holding funds), or the problem to answer without the provider being called.</summary>
    Task<ForwardAdmission> BeforeAsync(ForwardCall call, UsageEstimate estimate, CancellationToken ct);

    /// <summary><paramref name="usage"/> is null when nothing is billable: the provider failed, timed out or was never reached.</summary>
    Task AfterAsync(ForwardCall call, BilledUsage? usage, CancellationToken ct);
}

/// <summary>
/// Gateway billing. A customer call first holds the worst case it could cost (402 insufficient_credits, and the
/// provider is never called, when the customer cannot cover it); afterwards the usage is reported through
/// <see cref="UsageReporter"/>, the one posting routine behind <c>POST /v1/requests</c>, capturing that hold. A
/// billing-disabled call must be entitled (the meter on the customer's active plan) and is reported at zero charge.
/// Gateway calls charge nobody and are recorded as provider cost only.
/// </summary>
public sealed class ForwardBilling(MeterStore meters, ForwardStore store, Customers.CustomerStore customers, GroupCommit reporter, CreditStore credits,
    SubscriptionStore subscriptions, TimeProvider clock, IConfiguration configuration, ILogger<ForwardBilling> log) : IForwardBilling
{
    /// <summary>A hold outlives any call the gateway lets run (timeouts cut stalls, not streams that keep flowing).</summary>
    private static readonly TimeSpan HoldLifetime = TimeSpan.FromHours(1);

    public async Task<ForwardAdmission> BeforeAsync(ForwardCall call, UsageEstimate estimate, CancellationToken ct)
    {
        if (call.Mode == ForwardMode.Gateway) return ForwardAdmission.Go;
        var merchantId = call.Caller.MerchantId;
        var meter = await meters.FindLivePriceAsync(merchantId, call.Token.MeterSlug!, ct);
        if (meter is null) return ForwardAdmission.Refuse(Problems.NotFound("meter", call.Token.MeterSlug!, "slug"));
        if (call.Token.CustomerId is { } customerId && call.Mode != ForwardMode.MeterOnly &&
            !await customers.ExistsAsync(merchantId, customerId, ct))
            return ForwardAdmission.Refuse(Problems.NotFound("customer", customerId));
        // A percentage of an unknown cost would bill 0: refuse before the provider is paid.
        if (meter.Price.RateType == RateType.Percentage && call.Price is null && call.Mode != ForwardMode.BillingDisabled)
        {
            return ForwardAdmission.Refuse(Problems.Unprocessable("model_price_unknown", call.Model is null
                ? $"Meter '{meter.MeterSlug}' charges a percentage of the provider cost, and this request names no model."
                : $"Meter '{meter.MeterSlug}' charges a percentage of the provider cost, and model '{call.Model}' has no price (POST /v1/model_prices)."));
        }
        switch (call.Mode)
        {
            case ForwardMode.BillingDisabled:
                return await subscriptions.IsMeterOnActivePlanAsync(merchantId, call.Token.CustomerId!, meter.MeterId, ct)
                    ? ForwardAdmission.Go
                    : ForwardAdmission.Refuse(Problems.Forbidden("meter_not_on_plan",
                        $"Meter '{meter.MeterSlug}' is not linked to the customer's active plan."));
            case ForwardMode.Customer:
                var worst = ForwardWorstCase.Charge(meter.Price, estimate, call.Price, DefaultMaxOutputTokens, DefaultSeconds);
                if (worst <= 0) return ForwardAdmission.Go;
                return await credits.CreateHoldAsync(merchantId, call.Token.CustomerId!, meter.MeterId, worst, HoldLifetime, clock.GetUtcNow(), ct) switch
                {
                    CreditStore.HoldOutcome.Created created => new ForwardAdmission(null, created.Hold.HoldId),
                    CreditStore.HoldOutcome.Insufficient insufficient => ForwardAdmission.Refuse(Problems.InsufficientCredits(
                        $"This call could cost up to {Money.Format(worst)}; the customer can spend {insufficient.Available}. The provider was not called.")),
                    _ => ForwardAdmission.Refuse(Problems.NotFound("customer", call.Token.CustomerId!)),
                };
            default:
                return ForwardAdmission.Go;
        }
    }

    private long DefaultMaxOutputTokens => configuration.GetValue("Forward:DefaultMaxOutputTokens", 4096L);

    private decimal DefaultSeconds => configuration.GetValue("Forward:DefaultHoldSeconds", 600m);

    public async Task AfterAsync(ForwardCall call, BilledUsage? usage, CancellationToken ct)
    {
        if (usage is null)
        {
            // Nothing billable: release what was held.
            if (call.HoldId is { } holdId) await credits.VoidHoldAsync(call.Caller.MerchantId, holdId, clock.GetUtcNow(), ct);
            return;
        }
        switch (call.Mode)
        {
            case ForwardMode.MeterOnly or ForwardMode.Customer or ForwardMode.BillingDisabled:
                await ReportAsync(call, usage, ct);
                break;
            default:
                await RecordAsync(call, usage, ct);
                break;
        }
    }

    private async Task ReportAsync(ForwardCall call, BilledUsage billed, CancellationToken ct)
    {
        var metadata = new Dictionary<string, string>(call.Metadata);
        if (billed.Estimated) metadata["estimated"] = "true";
        var body = new CreateRequestBody
        {
            RequestId = call.RequestId,
            CustomerId = call.Mode == ForwardMode.MeterOnly ? null : call.Token.CustomerId,
            MeterSlug = call.Token.MeterSlug,
            Metadata = metadata,
            InputTokens = billed.Usage.InputTokens,
            OutputTokens = billed.Usage.Output,
            InputCharacters = billed.Usage.InputCharacters,
            InputSeconds = billed.Usage.InputSeconds,
            Cost = billed.ProviderCost,
            DisableBilling = call.Mode == ForwardMode.BillingDisabled ? true : null,
            HoldId = call.HoldId,
            // The key is never recorded, only whose it was: the caller's own (BYOK) or the merchant's managed key.
            Source = new ReportSource(call.Upstream.Host, call.Token.ProviderKey is null ? "managed" : "unmanaged", call.Model,
                call.Upstream.AbsolutePath),
        };
        ReportOutcome outcome;
        try
        {
            // Through group commit, as single reports: concurrent gateway calls share the posting transaction.
            outcome = await reporter.ReportAsync(new ReportItem(call.Caller.MerchantId, body), ct);
            if (outcome is ReportOutcome.Refused { Problem.Code: "hold_not_active" } && call.HoldId is not null)
            {
                // The hold lapsed while the call ran: the usage is still owed, so it is reported without it.
                outcome = await reporter.ReportAsync(new ReportItem(call.Caller.MerchantId, body with { HoldId = null }), ct);
            }
        }
        catch when (call.HoldId is not null)
        {
            // Posting failed: the reservation must not outlive the call and block the customer's next ones.
            await credits.VoidHoldAsync(call.Caller.MerchantId, call.HoldId, clock.GetUtcNow(), CancellationToken.None);
            throw;
        }
        if (outcome is ReportOutcome.Refused refused)
        {
            if (call.HoldId is { } holdId) await credits.VoidHoldAsync(call.Caller.MerchantId, holdId, clock.GetUtcNow(), ct);
            // The provider already ran: the meter or customer vanished after the check. Loud, so finance can follow up.
            log.LogError("Gateway request {RequestId} of merchant {MerchantId} was served but its usage report was refused: {Code}",
                call.RequestId, call.Caller.MerchantId, refused.Problem.Code);
        }
    }
    private Task RecordAsync(ForwardCall call, BilledUsage billed, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var postings = UsagePosting.For(null, 0, billed.ProviderCost, 0, 0);
        var lineage = JsonSerializer.Serialize(new
        {
            request_id = call.RequestId,
            mode = ForwardModes.Name(call.Mode),
            customer_id = call.Token.CustomerId,
            meter_slug = call.Token.MeterSlug,
            upstream = call.Upstream.GetLeftPart(UriPartial.Path),
            model = call.Model,
            model_price_version = call.Price?.Version,
            usage = new
            {
                input_uncached = billed.Usage.InputUncached,
                cache_read = billed.Usage.CacheRead,
                cache_write = billed.Usage.CacheWrite,
                output = billed.Usage.Output,
                input_characters = billed.Usage.InputCharacters,
                input_seconds = billed.Usage.InputSeconds,
            },
            provider_cost = Money.Format(billed.ProviderCost),
            estimated = billed.Estimated,
            metadata = call.Metadata,
        }, LavaJson.Options);
        return store.RecordGatewayCallAsync(new ForwardStore.GatewayCall(
            call.Caller.MerchantId, call.RequestId, Ids.New("txn", now), call.Token.CustomerId, lineage, now,
            postings.Select(p => p.AccountId).ToArray(), postings.Select(p => p.Amount).ToArray()), ct);
    }
}
