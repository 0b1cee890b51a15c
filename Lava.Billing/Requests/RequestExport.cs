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

    // A report without a provider cost exports 0, as its JSON form shows it.
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
        }, PlanFor(filter));

    /// <summary>
    /// Walking an index in seq order when one serves the whole filter (requests_by_seq with none, _by_customer or _by_meter
    /// with one of those): the first row leaves at once. With both, or a metadata filter (no index), PostgreSQL may combine
    /// indexes or scan, and sort only what matched.
    /// </summary>
    internal static ExportPlan PlanFor(RequestListStore.Filter filter) =>
        filter.MetadataJson is null && (filter.CustomerId is null || filter.MeterId is null) ? ExportPlan.InIndexOrder : ExportPlan.Chosen;
}
