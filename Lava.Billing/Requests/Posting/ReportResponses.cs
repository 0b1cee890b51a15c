using System.Text.Json;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Pricing;
using MeterPrice = Lava.Billing.Meters.MeterPrice;

namespace Lava.Billing.Requests.Posting;

/// <summary>The stored response of a posted report and the lineage its ledger transaction carries (docs/ledger.md, "Lineage").</summary>
public static class ReportResponses
{
    public static RestRequest Of(PreparedReport p, MeterPrice meter, Charge charge, string transactionId, CustomerBalance? balance)
    {
        var body = p.Body;
        var source = body.Source ?? ReportSource.Reported;
        return new RestRequest(
            p.RequestId, "completed", body.Customer, meter.MeterId, source.Provider, source.ProviderKeyType, source.Model, source.Endpoint,
            ModelUsageOf(p.Usage, body.Cost), Money.Format(body.Cost ?? 0), ChargeOf(meter.Price, charge),
            body.Metadata ?? new Dictionary<string, string>(), p.OccurredAt, p.Now,
            p.Mode, meter.Version, transactionId, balance, body.HoldId);
    }

    public static string Lineage(RestRequest r, MeterPrice meter, Charge charge) => JsonSerializer.Serialize(new
    {
        request_id = r.RequestId,
        mode = r.Mode,
        meter_id = meter.MeterId,
        price_version = meter.Version,
        quantities = r.ModelUsage,
        provider_cost = r.Cost,
        charge = r.Charge,
        charge_exact = charge.Amount,
    }, LavaJson.Options);

    private static ModelUsage ModelUsageOf(Usage u, decimal? cost) => new(
        u.InputTokens, u.OutputTokens, u.InputTokens + u.OutputTokens,
        u.InputCharacters, u.OutputCharacters, u.InputCharacters + u.OutputCharacters,
        u.InputSeconds, u.OutputSeconds, u.InputSeconds + u.OutputSeconds,
        // A report carries one provider cost; its split between input and output is not known.
        Money.Format(0m), Money.Format(0m), Money.Format(cost ?? 0));

    private static RequestCharge ChargeOf(Pricing.MeterPrice price, Charge charge)
    {
        var type = PriceCalculator.TierTypeName(price.TierType);
        var lines = charge.Lines.Select(l => new BreakdownLine(
            new BreakdownTier(l.TierStart, Money.Format(l.Rate), type),
            Tokens: price.TierType == TierType.Tokens1M ? l.Quantity : 0,
            Characters: price.TierType == TierType.Characters1M ? l.Quantity : 0,
            Seconds: price.TierType == TierType.Minutes ? l.Quantity : 0,
            Cost: Money.Format(l.Amount))).ToList();
        return new RequestCharge(Money.Format(charge.Amount), PriceCalculator.RateTypeName(price.RateType), lines);
    }
}
