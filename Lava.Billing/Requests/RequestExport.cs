using Lava.Billing.Finance;
using Lava.Billing.Infrastructure.Database;

namespace Lava.Billing.Requests;

/// <summary>GET /v1/requests as CSV or NDJSON: the list's filters and order (newest first), every row (docs/exports.md).</summary>
public sealed class RequestExport(ReadDataSource db)
{
    /// <summary>The export columns, in the order <see cref="SelectRequests"/> returns them.</summary>
    public static readonly IReadOnlyList<ExportColumn> Columns =
    [
        new("request_id", ColumnKind.Text), new("created_at", ColumnKind.Timestamp), new("timestamp", ColumnKind.Timestamp),
        new("mode", ColumnKind.Text), new("customer_id", ColumnKind.Text), new("meter_id", ColumnKind.Text),
        new("price_version", ColumnKind.Integer), new("input_tokens", ColumnKind.Integer), new("output_tokens", ColumnKind.Integer),
        new("input_characters", ColumnKind.Integer), new("output_characters", ColumnKind.Integer),
        new("input_seconds", ColumnKind.Number), new("output_seconds", ColumnKind.Number), new("cost", ColumnKind.Money),
        new("charge", ColumnKind.Money), new("transaction_id", ColumnKind.Text), new("metadata", ColumnKind.Json),
    ];

    // A report without a provider cost exports 0, as its JSON form shows it. Each filter has an index in this order
    // (requests_by_seq, _by_customer, _by_meter), so the export walks one of them (ExportPlan.InIndexOrder).
    private const string SelectRequests = """
        SELECT request_id, created_at, occurred_at, mode, customer_id, meter_id, price_version::bigint AS price_version,
               input_tokens, output_tokens, input_characters, output_characters, input_seconds, output_seconds,
               coalesce(cost, 0) AS cost, charge_amount, transaction_id, metadata::text AS metadata
          FROM requests
         WHERE merchant_id = @MerchantId
           AND seq < @Before
           AND (@CustomerId::text IS NULL OR customer_id = @CustomerId)
           AND (@MeterId::text IS NULL OR meter_id = @MeterId)
           AND (@MetadataJson::jsonb IS NULL OR metadata @> @MetadataJson::jsonb)
         ORDER BY seq DESC
        """;

    public IResult Stream(string merchantId, RequestListStore.Filter filter, long before, ExportFormat format) =>
        Exports.Stream(db, format, "requests", Columns, SelectRequests, new
        {
            MerchantId = merchantId, Before = before, filter.CustomerId, filter.MeterId, filter.MetadataJson,
        }, ExportPlan.InIndexOrder);
}
