using Dapper;
using Lava.Billing.Requests.Posting;
using Npgsql;

namespace Lava.Billing.Requests;

/// <summary>Reads of stored reports, newest first, keyset-paged on seq.</summary>
public sealed class RequestListStore(NpgsqlDataSource db)
{
    public sealed record Filter(string? CustomerId, string? MeterId, string? MetadataJson);

    public sealed record Row(long Seq, string Response);

    private const string SelectPage = $"""
        SELECT r.seq, {StoredReport.ResponseSql} AS response
          FROM requests r
          {StoredReport.JoinTransaction}
         WHERE r.merchant_id = @MerchantId
           AND r.seq < @Before
           AND (@CustomerId::text IS NULL OR r.customer_id = @CustomerId)
           AND (@MeterId::text IS NULL OR r.meter_id = @MeterId)
           AND (@MetadataJson::jsonb IS NULL OR r.metadata @> @MetadataJson::jsonb)
         ORDER BY r.seq DESC
         LIMIT @Take
        """;

    public async Task<List<Row>> PageAsync(string merchantId, Filter filter, long before, int take, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var rows = await connection.QueryAsync<Row>(new CommandDefinition(SelectPage, new
        {
            MerchantId = merchantId, Before = before, filter.CustomerId, filter.MeterId, filter.MetadataJson, Take = take,
        }, cancellationToken: ct));
        return rows.Select(r => r with { Response = StoredReport.Body(r.Response) }).ToList();
    }
}
