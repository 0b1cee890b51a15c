using System.Text.Json;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Ledger;
using Lava.Billing.Meters;
using Lava.Billing.Pricing;
using Lava.Billing.Requests;

namespace Lava.Billing.Forward;

/// <summary>One gateway call, as billing sees it.</summary>
public sealed record ForwardCall(
    Caller Caller,
    ForwardToken Token,
    ForwardMode Mode,
    string RequestId,
    Uri Upstream,
    ApiFormat Format,
    string? Model,
    ModelPrice? Price,
    IReadOnlyDictionary<string, string> Metadata);

/// <summary>The worst case before the call: the prompt's estimated size and the most output it asked for.</summary>
public sealed record UsageEstimate(NormalizedUsage Input, long? MaxOutputTokens);

/// <summary>What is billed after the call. <see cref="Estimated"/>: the provider's own count never arrived.</summary>
public sealed record BilledUsage(NormalizedUsage Usage, decimal? ProviderCost, bool Estimated);

/// <summary>
/// The billing seam of the gateway: asked once before the provider is called (it may refuse), told once after.
/// </summary>
public interface IForwardBilling
{
    /// <summary>Null to go ahead; otherwise the problem to answer, without the provider being called.</summary>
    Task<ProblemResult?> BeforeAsync(ForwardCall call, UsageEstimate estimate, CancellationToken ct);

    /// <summary><paramref name="usage"/> is null when nothing is billable: the provider failed, timed out or was never reached.</summary>
    Task AfterAsync(ForwardCall call, BilledUsage? usage, CancellationToken ct);
}

/// <summary>
/// Billing for the modes that need no holds. Meter-only and customer calls are reported through
/// <see cref="UsageReporter"/>, the one posting routine behind <c>POST /v1/requests</c>, with the gateway's request id.
/// Gateway calls charge nobody and are recorded as provider cost only.
/// </summary>
public sealed class ForwardBilling(MeterStore meters, ForwardStore store, UsageReporter reporter, TimeProvider clock,
    ILogger<ForwardBilling> log) : IForwardBilling
{
    public async Task<ProblemResult?> BeforeAsync(ForwardCall call, UsageEstimate estimate, CancellationToken ct)
    {
        if (call.Mode == ForwardMode.Gateway) return null;
        var merchantId = call.Caller.MerchantId;
        var meter = await meters.FindLivePriceAsync(merchantId, call.Token.MeterSlug!, ct);
        if (meter is null) return Problems.NotFound("meter", call.Token.MeterSlug!);
        if (call.Token.CustomerId is { } customerId && call.Mode != ForwardMode.MeterOnly &&
            !await store.CustomerExistsAsync(merchantId, customerId, ct))
            return Problems.NotFound("customer", customerId);
        // A percentage of an unknown cost would bill 0: refuse before the provider is paid.
        if (meter.Price.RateType == RateType.Percentage && call.Price is null)
        {
            return Problems.Unprocessable("model_price_unknown", call.Model is null
                ? $"Meter '{meter.MeterSlug}' charges a percentage of the provider cost, and this request names no model."
                : $"Meter '{meter.MeterSlug}' charges a percentage of the provider cost, and model '{call.Model}' has no price (POST /v1/model_prices).");
        }
        // Customer mode: the hold for the worst case (402 insufficient_credits) and, with billing disabled, the
        // entitlement check (403 meter_not_on_plan) come with plans and holds (issue 4); until then both go ahead.
        return null;
    }

    public async Task AfterAsync(ForwardCall call, BilledUsage? usage, CancellationToken ct)
    {
        // Nothing billable: once holds exist (issue 4), the customer's hold is released here.
        if (usage is null) return;
        switch (call.Mode)
        {
            case ForwardMode.MeterOnly or ForwardMode.Customer:
                await ReportAsync(call, usage, ct);
                break;
            default:
                // Billing disabled still tracks the customer's usage (DESIGN.md §6); until the reporter takes
                // disable_billing (issue 4) it is recorded like a gateway call, naming customer and meter.
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
            CustomerId = call.Mode == ForwardMode.Customer ? call.Token.CustomerId : null,
            MeterSlug = call.Token.MeterSlug,
            Metadata = metadata,
            InputTokens = billed.Usage.InputTokens,
            OutputTokens = billed.Usage.Output,
            InputCharacters = billed.Usage.InputCharacters,
            InputSeconds = billed.Usage.InputSeconds,
            Cost = billed.ProviderCost,
        };
        if (await reporter.ReportAsync(call.Caller.MerchantId, body, ct) is ReportOutcome.Refused refused)
        {
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
