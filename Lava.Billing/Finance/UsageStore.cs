using Dapper;
using Lava.Billing.Infrastructure.Database;

namespace Lava.Billing.Finance;

/// <summary>Usage analytics over stored requests, on the read data source (a replica when one is configured).</summary>
public sealed class UsageStore(ReadDataSource db)
{
    public sealed record Filter(string? CustomerId, string? MeterId, string? MetadataJson);

    /// <summary>One day's totals; money as text with 10 places, and the whole range's money totals on every day.</summary>
    public sealed record Day(DateOnly Date, long TotalRequests, long TotalUsageTokens, string TotalCost, string TotalCharge,
        string RangeCost, string RangeCharge);

    // Days are bucketed by occurred_at shifted into the caller's fixed UTC offset. The filters are GET /v1/requests's.
    // Money is summed in numeric and read as text, never as a decimal: a sum over many requests has no bound
    // (docs/ledger.md, "Bounds") and may not fit one; the range totals are window sums in the same snapshot.
    private const string SelectDays = """
        SELECT ((occurred_at AT TIME ZONE 'UTC') + make_interval(mins => @OffsetMinutes))::date AS date,
               count(*)                                             AS total_requests,
               coalesce(sum(input_tokens + output_tokens), 0)::bigint AS total_usage_tokens,
               round(coalesce(sum(cost), 0), 10)::text              AS total_cost,
               round(coalesce(sum(charge_amount), 0), 10)::text     AS total_charge,
               round(sum(coalesce(sum(cost), 0)) OVER (), 10)::text AS range_cost,
               round(sum(sum(charge_amount)) OVER (), 10)::text     AS range_charge
          FROM requests
         WHERE merchant_id = @MerchantId
           AND occurred_at >= @Start
           AND occurred_at <  @End
           AND (@CustomerId::text IS NULL OR customer_id = @CustomerId)
           AND (@MeterId::text IS NULL OR meter_id = @MeterId)
           AND (@MetadataJson::jsonb IS NULL OR metadata @> @MetadataJson::jsonb)
         GROUP BY 1
        """;

    public async Task<List<Day>> DaysAsync(string merchantId, DateTimeOffset start, DateTimeOffset end, Filter filter, CancellationToken ct)
    {
        await using var connection = await db.Source.OpenConnectionAsync(ct);
        var rows = await connection.QueryAsync<Day>(new CommandDefinition(SelectDays, new
        {
            MerchantId = merchantId, Start = start.UtcDateTime, End = end.UtcDateTime, OffsetMinutes = (int)start.Offset.TotalMinutes,
            filter.CustomerId, filter.MeterId, filter.MetadataJson,
        }, cancellationToken: ct));
        return rows.AsList();
    }
}
