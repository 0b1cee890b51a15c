using Dapper;
using Lava.Billing.Infrastructure.Database;

namespace Lava.Billing.Finance;

/// <summary>Usage analytics over stored requests, on the read data source (a replica when one is configured).</summary>
public sealed class UsageStore(ReadDataSource db)
{
    public sealed record Filter(string? CustomerId, string? MeterId, string? MetadataJson);

    public sealed record Day(DateOnly Date, long TotalRequests, long TotalUsageTokens, decimal TotalCost, decimal TotalCharge);

    // Days are bucketed by occurred_at shifted into the caller's fixed UTC offset. The filters are GET /v1/requests's.
    private const string SelectDays = """
        SELECT ((occurred_at AT TIME ZONE 'UTC') + make_interval(mins => @OffsetMinutes))::date AS date,
               count(*)                                             AS total_requests,
               coalesce(sum(input_tokens + output_tokens), 0)::bigint AS total_usage_tokens,
               coalesce(sum(cost), 0)                               AS total_cost,
               coalesce(sum(charge_amount), 0)                      AS total_charge
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
