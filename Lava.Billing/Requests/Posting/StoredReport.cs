using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Pricing;

namespace Lava.Billing.Requests.Posting;

/// <summary>
/// What a posted report stores, each fact once and as JSON arrays, not objects with long keys (docs/ledger.md, "What a
/// report stores"). The usage ledger transaction's <c>lineage_compact</c> holds the pricing: mode, quantities, provider
/// cost, exact charge, rate and tier type, tier lines. The request's <c>response</c> holds only what neither its columns
/// nor that lineage say: the customer's balance after, a gateway call's source, the metadata's member order. The
/// response and the full lineage are built again from them by <see cref="ReportResponses"/>, the code that built them
/// first. Rows written before hold the whole response (a JSON object) and the whole lineage (<c>lineage_compact</c>
/// null); they are read as they are.
/// </summary>
public static class StoredReport
{
    private const int Version = 1;

    /// <summary>
    /// A report's response as <see cref="Body"/> takes it, for a statement whose request is <c>r</c> and whose usage ledger
    /// transaction is <c>t</c> (joined by <see cref="JoinTransaction"/>): the stored response when it is whole, else the
    /// parts it is built from.
    /// </summary>
    public const string ResponseSql = """
        CASE WHEN left(r.response, 1) = '{' THEN r.response
             ELSE json_build_array(r.response::json, t.lineage_compact::json, r.request_id, r.customer_id, r.meter_id, r.price_version,
                                   r.mode, r.metadata, r.occurred_at AT TIME ZONE 'UTC', r.created_at AT TIME ZONE 'UTC', r.transaction_id,
                                   r.hold_id)::text
        END
        """;

    // A lateral with LIMIT 1: joined plainly, the posting's replay read was planned from the ledger side, reading the
    // merchant's requests by another index (ReportPlanTests). The transaction always exists (a foreign key).
    public const string JoinTransaction = """
        CROSS JOIN LATERAL (SELECT t.lineage_compact FROM ledger_transactions t
                             WHERE t.merchant_id = r.merchant_id AND t.transaction_id = r.transaction_id
                             LIMIT 1) AS t
        """;

    /// <summary><c>[1, mode, [input_tokens, output_tokens, input_characters, output_characters, input_seconds, output_seconds], cost, charge, rate_type, tier_type, [[tier_start, rate, quantity, amount], …]]</c>.</summary>
    public static string Lineage(PreparedReport p, Pricing.MeterPrice price, Charge charge) => Write(w =>
    {
        w.WriteNumberValue(Version);
        w.WriteStringValue(p.Mode);
        w.WriteStartArray();
        w.WriteNumberValue(p.Usage.InputTokens);
        w.WriteNumberValue(p.Usage.OutputTokens);
        w.WriteNumberValue(p.Usage.InputCharacters);
        w.WriteNumberValue(p.Usage.OutputCharacters);
        w.WriteNumberValue(p.Usage.InputSeconds);
        w.WriteNumberValue(p.Usage.OutputSeconds);
        w.WriteEndArray();
        if (p.Body.Cost is { } cost) w.WriteNumberValue(cost);
        else w.WriteNullValue();
        w.WriteNumberValue(charge.Amount);
        w.WriteStringValue(PriceCalculator.RateTypeName(price.RateType));
        w.WriteStringValue(PriceCalculator.TierTypeName(price.TierType));
        w.WriteStartArray();
        foreach (var l in charge.Lines)
        {
            w.WriteStartArray();
            w.WriteNumberValue(l.TierStart);
            w.WriteNumberValue(l.Rate);
            w.WriteNumberValue(l.Quantity);
            w.WriteNumberValue(l.Amount);
            w.WriteEndArray();
        }
        w.WriteEndArray();
    });

    /// <summary>
    /// <c>[1, [credits_remaining, receivable], [provider, provider_key_type, model, endpoint], [metadata order]]</c>, each
    /// part null (and left off at the end) when there is nothing to say: no customer, the source of a report posted to
    /// <c>POST /v1/requests</c>, metadata members in ordinal order. Amounts have their trailing zeros cut.
    /// </summary>
    public static string Response(RestRequest r)
    {
        // Written straight, without a list of parts or sorted copies: every posted report stores one.
        var balance = r.CustomerBalance;
        var source = new ReportSource(r.Provider, r.ProviderKeyType, r.Model, r.Endpoint);
        var ordinalOrder = InOrdinalOrder(r.Metadata.Keys);
        var parts = !ordinalOrder ? 3 : source != ReportSource.Reported ? 2 : balance is not null ? 1 : 0;
        return Write(w =>
        {
            w.WriteNumberValue(Version);
            if (parts >= 1)
            {
                if (balance is null) w.WriteNullValue();
                else
                {
                    w.WriteStartArray();
                    w.WriteStringValue(Cut(balance.CreditsRemaining));
                    w.WriteStringValue(Cut(balance.Receivable));
                    w.WriteEndArray();
                }
            }
            if (parts >= 2)
            {
                if (source == ReportSource.Reported) w.WriteNullValue();
                else
                {
                    w.WriteStartArray();
                    w.WriteStringValue(source.Provider);
                    w.WriteStringValue(source.ProviderKeyType);
                    w.WriteStringValue(source.Model);
                    w.WriteStringValue(source.Endpoint);
                    w.WriteEndArray();
                }
            }
            if (parts >= 3)
            {
                var keys = r.Metadata.Keys.ToList();
                var sorted = keys.Order(StringComparer.Ordinal).ToList();
                w.WriteStartArray();
                foreach (var key in keys) w.WriteNumberValue(sorted.IndexOf(key));
                w.WriteEndArray();
            }
        });
    }

    private static bool InOrdinalOrder(IEnumerable<string> keys)
    {
        string? previous = null;
        foreach (var key in keys)
        {
            if (previous is not null && string.CompareOrdinal(previous, key) > 0) return false;
            previous = key;
        }
        return true;
    }

    /// <summary>The response body from what <see cref="ResponseSql"/> read.</summary>
    public static string Body(string stored)
    {
        if (stored.StartsWith('{')) return stored;
        using var document = JsonDocument.Parse(stored);
        var row = document.RootElement;
        var extra = row[0];
        if (extra[0].GetInt32() != Version) throw new InvalidOperationException($"Stored response of version {extra[0]} is not known.");
        var lineage = CompactLineage.Of(row[1]);
        var balance = Part(extra, 1) is { } b ? new CustomerBalance(Pad(b[0].GetString()!), Pad(b[1].GetString()!)) : null;
        var source = Part(extra, 2) is { } s ? new ReportSource(s[0].GetString()!, s[1].GetString()!, s[2].GetString(), s[3].GetString()!) : ReportSource.Reported;
        var storedMetadata = row[7].EnumerateObject().Select(m => KeyValuePair.Create(m.Name, m.Value.GetString()!)).ToList();
        var sorted = storedMetadata.OrderBy(m => m.Key, StringComparer.Ordinal).ToList();
        var metadata = new Dictionary<string, string>(Part(extra, 3) is { } order ? order.EnumerateArray().Select(i => sorted[i.GetInt32()]) : sorted);
        var response = ReportResponses.Build(row[2].GetString()!, row[3].GetString(), row[4].GetString()!, source, lineage.Usage, lineage.Cost,
            lineage.RateType, lineage.TierType, lineage.Charge, metadata, Utc(row[8]), Utc(row[9]), row[6].GetString()!, row[5].GetInt32(),
            row[10].GetString()!, balance, row[11].GetString());
        return RequestJson.Response(response);
    }

    /// <summary>The lineage of a usage transaction stored compactly, as it was recorded in full.</summary>
    public static string FullLineage(string requestId, string meterId, int priceVersion, string compact)
    {
        using var document = JsonDocument.Parse(compact);
        var l = CompactLineage.Of(document.RootElement);
        return ReportResponses.Lineage(requestId, l.Mode, meterId, priceVersion, l.Usage, l.Cost, l.RateType, l.TierType, l.Charge);
    }

    private sealed record CompactLineage(string Mode, Usage Usage, decimal? Cost, Charge Charge, RateType RateType, TierType TierType)
    {
        public static CompactLineage Of(JsonElement l)
        {
            if (l[0].GetInt32() != Version) throw new InvalidOperationException($"Stored lineage of version {l[0]} is not known.");
            var q = l[2];
            var usage = new Usage(q[0].GetInt64(), q[1].GetInt64(), q[2].GetInt64(), q[3].GetInt64(), Decimal(q[4]), Decimal(q[5]));
            var lines = l[7].EnumerateArray().Select(t => new TierLine(Decimal(t[0]), Decimal(t[1]), Decimal(t[2]), Decimal(t[3]))).ToList();
            if (!PriceCalculator.TryParseRateType(l[5].GetString(), out var rateType) || !PriceCalculator.TryParseTierType(l[6].GetString(), out var tierType))
                throw new InvalidOperationException("Stored lineage names an unknown rate or tier type.");
            return new CompactLineage(l[1].GetString()!, usage, l[3].ValueKind == JsonValueKind.Null ? null : Decimal(l[3]),
                new Charge(Decimal(l[4]), lines), rateType, tierType);
        }
    }

    private static JsonElement? Part(JsonElement extra, int index) =>
        index < extra.GetArrayLength() && extra[index].ValueKind != JsonValueKind.Null ? extra[index] : null;

    // Parsed from the number's own text: its scale (1.50, not 1.5) is part of what the response said.
    private static decimal Decimal(JsonElement e) => decimal.Parse(e.GetRawText(), NumberStyles.Float, CultureInfo.InvariantCulture);

    // Read as UTC without an offset: a session's time zone may have offsets of seconds, which JSON timestamps cannot carry.
    private static DateTimeOffset Utc(JsonElement e) => new(DateTime.SpecifyKind(e.GetDateTime(), DateTimeKind.Unspecified), TimeSpan.Zero);

    // Money.Format always writes ten places: the zeros it pads with are cut to store and put back to answer.
    private static string Cut(string amount) => amount.TrimEnd('0').TrimEnd('.');

    private static string Pad(string cut)
    {
        var point = cut.IndexOf('.');
        var places = point < 0 ? 0 : cut.Length - point - 1;
        return (point < 0 ? cut + "." : cut) + new string('0', 10 - places);
    }

    private static string Write(Action<Utf8JsonWriter> items)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartArray();
            items(w);
            w.WriteEndArray();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }
}
