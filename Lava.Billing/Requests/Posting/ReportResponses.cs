using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Pricing;
using MeterPrice = Lava.Billing.Meters.MeterPrice;

namespace Lava.Billing.Requests.Posting;

/// <summary>
/// The response of a posted report and the lineage its ledger transaction carries (docs/ledger.md, "Lineage"). Both are
/// built here from the same parts whether the report is being posted or read back from what it stored
/// (<see cref="StoredReport"/>), so a replay and a read answer exactly what the first call answered.
/// </summary>
public static class ReportResponses
{
    public static RestRequest Of(PreparedReport p, MeterPrice meter, Charge charge, string transactionId, CustomerBalance? balance)
    {
        var body = p.Body;
        return Build(p.RequestId, body.Customer, meter.MeterId, body.Source ?? ReportSource.Reported, p.Usage, body.Cost,
            meter.Price.RateType, meter.Price.TierType, charge, body.Metadata ?? new Dictionary<string, string>(), p.OccurredAt, p.Now,
            p.Mode, meter.Version, transactionId, balance, body.HoldId);
    }

    public static RestRequest Build(string requestId, string? customerId, string meterId, ReportSource source, Usage usage, decimal? cost,
        RateType rateType, TierType tierType, Charge charge, IReadOnlyDictionary<string, string> metadata, DateTimeOffset occurredAt,
        DateTimeOffset createdAt, string mode, int priceVersion, string transactionId, CustomerBalance? balance, string? holdId) =>
        new(requestId, "completed", customerId, meterId, source.Provider, source.ProviderKeyType, source.Model, source.Endpoint,
            ModelUsageOf(usage, cost), Money.Format(cost ?? 0), ChargeOf(rateType, tierType, charge), metadata, occurredAt, createdAt,
            mode, priceVersion, transactionId, balance, holdId);

    /// <summary>
    /// The lineage as a usage transaction recorded it in full before it was stored compactly, with its members in the
    /// order jsonb keeps them, so it reads back exactly as a transaction posted before then reads.
    /// </summary>
    public static string Lineage(string requestId, string mode, string meterId, int priceVersion, Usage usage, decimal? cost,
        RateType rateType, TierType tierType, Charge charge) => JsonbOrder(JsonSerializer.SerializeToNode(new
    {
        request_id = requestId,
        mode,
        meter_id = meterId,
        price_version = priceVersion,
        quantities = ModelUsageOf(usage, cost),
        provider_cost = Money.Format(cost ?? 0),
        charge = ChargeOf(rateType, tierType, charge),
        charge_exact = charge.Amount,
    }, LavaJson.Options))!.ToJsonString();

    private static ModelUsage ModelUsageOf(Usage u, decimal? cost) => new(
        u.InputTokens, u.OutputTokens, u.InputTokens + u.OutputTokens,
        u.InputCharacters, u.OutputCharacters, u.InputCharacters + u.OutputCharacters,
        u.InputSeconds, u.OutputSeconds, u.InputSeconds + u.OutputSeconds,
        // A report carries one provider cost; its split between input and output is not known.
        Money.Format(0m), Money.Format(0m), Money.Format(cost ?? 0));

    private static RequestCharge ChargeOf(RateType rateType, TierType tierType, Charge charge)
    {
        var type = PriceCalculator.TierTypeName(tierType);
        var lines = charge.Lines.Select(l => new BreakdownLine(
            new BreakdownTier(l.TierStart, Money.Format(l.Rate), type),
            Tokens: tierType == TierType.Tokens1M ? l.Quantity : 0,
            Characters: tierType == TierType.Characters1M ? l.Quantity : 0,
            Seconds: tierType == TierType.Minutes ? l.Quantity : 0,
            Cost: Money.Format(l.Amount))).ToList();
        return new RequestCharge(Money.Format(charge.Amount), PriceCalculator.RateTypeName(rateType), lines);
    }

    // jsonb keeps an object's keys shortest first, then by their UTF-8 bytes; the ledger read writes a lineage read
    // from jsonb in that order.
    private static JsonNode? JsonbOrder(JsonNode? node) => node switch
    {
        JsonObject o => new JsonObject(o.Select(p => p.Key)
            .OrderBy(k => Encoding.UTF8.GetByteCount(k))
            .ThenBy(k => Encoding.UTF8.GetBytes(k), Comparer<byte[]>.Create((a, b) => a.AsSpan().SequenceCompareTo(b)))
            .Select(k => KeyValuePair.Create(k, JsonbOrder(o[k]?.DeepClone())))
            .ToList()),
        JsonArray a => new JsonArray(a.Select(e => JsonbOrder(e?.DeepClone())).ToArray()),
        _ => node,
    };
}
