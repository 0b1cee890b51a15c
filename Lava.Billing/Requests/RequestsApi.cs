using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Lava.Billing.Finance;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Requests.Posting;
using Microsoft.AspNetCore.Mvc;

namespace Lava.Billing.Requests;

public static class RequestsApi
{
    public static RouteGroupBuilder MapRequestsApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/requests").WithTags("Requests");
        group.MapPost("/", Create).WithValidation().WithoutMerchantTurn().WithName("CreateRequest")
            .WithSummary("Report usage: priced, posted to the ledger, idempotent on request_id");
        group.MapGet("/", List).WithName("ListRequests").WithSummary("List reports, newest first");
        group.MapGet("/{**requestId}", Retrieve).WithName("RetrieveRequest").WithSummary("Retrieve a report by its request_id");
        return group;
    }

    public static async Task<IResult> Create(Caller caller, CreateRequestBody body, GroupCommit reporter, MerchantLimits limits, HttpContext http,
        CancellationToken ct)
    {
        // With group commit off, the report is posted on this call's time on the shared pool: within its merchant's turns,
        // waiting for one rather than refused (the work it describes already ran).
        using var turn = reporter.Coalesces ? null : await limits.WaitForTurnAsync(caller.MerchantId, MerchantLimits.Kind.Requests, ct);
        return await reporter.ReportAsync(new ReportItem(caller.MerchantId, body, caller.SecretKeyId), ct) switch
        {
            ReportOutcome.Created c => Json(c.StatusCode, c.Response),
            ReportOutcome.Replayed r => Replayed(http, r.StatusCode, r.Response),
            ReportOutcome.Refused f => ReportProblems.Of(f.Refusal),
            var other => throw new InvalidOperationException($"unexpected outcome {other}"),
        };
    }

    public static async Task<IResult> Retrieve(Caller caller, string requestId, RequestStore store, CancellationToken ct) =>
        await store.FindAsync(caller.MerchantId, requestId, ct) is { } stored
            ? Json(StatusCodes.Status200OK, stored.Response)
            : Problems.NotFound("request", requestId, "request_id");

    public static async Task<IResult> List(Caller caller, RequestListStore store, string? cursor, string? limit,
        [FromQuery(Name = "customer_id")] string? customerId, [FromQuery(Name = "meter_id")] string? meterId,
        [FromQuery(Name = "metadata_filters")] string? metadataFilters, string? format, HttpRequest request,
        RequestExport export, CancellationToken ct)
    {
        if (!Exports.TryNegotiate(request, format, out var exportFormat, out var problem)) return problem!;
        // An export runs to the end whatever limit says (docs/exports.md), so a limit meant for pages is not refused.
        if (!Paging.TryRead(cursor, exportFormat == ExportFormat.Json ? limit : null, out var page, out problem)) return problem!;
        long before = long.MaxValue;
        if (page.After is not null && !long.TryParse(page.After, NumberStyles.None, CultureInfo.InvariantCulture, out before))
            return Problems.Validation(new Dictionary<string, string[]> { ["cursor"] = ["is not a cursor this API issued"] });
        if (!MetadataFilters.TryParse(metadataFilters, out var metadataJson))
        {
            return Problems.Validation(new Dictionary<string, string[]>
            {
                ["metadata_filters"] = ["must be a JSON array of [key, value] string pairs, e.g. [[\"team\",\"a\"]]"],
            });
        }
        var filter = new RequestListStore.Filter(NullIfEmpty(customerId), NullIfEmpty(meterId), metadataJson);
        if (exportFormat != ExportFormat.Json) return export.Stream(caller.MerchantId, filter, before, exportFormat);
        var rows = await store.PageAsync(caller.MerchantId, filter, before, page.Limit + 1, ct);
        return Json(StatusCodes.Status200OK, Envelope(rows, page.Limit));
    }

    // The stored responses are already JSON: they are written into the envelope as they are.
    private static string Envelope(List<RequestListStore.Row> rows, int limit)
    {
        var hasMore = rows.Count > limit;
        var buffer = new ArrayBufferWriter<byte>(1024);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartArray("data");
            foreach (var row in rows.Take(limit)) w.WriteRawValue(row.Response, skipInputValidation: true);
            w.WriteEndArray();
            w.WriteBoolean("has_more", hasMore);
            if (hasMore) w.WriteString("next_cursor", Paging.Encode(rows[limit - 1].Seq.ToString(CultureInfo.InvariantCulture)));
            else w.WriteNull("next_cursor");
            w.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    private static IResult Json(int status, string json) => Results.Content(json, "application/json", Encoding.UTF8, status);

    private static IResult Replayed(HttpContext http, int status, string json)
    {
        http.Response.Headers["Idempotent-Replayed"] = "true";
        return Json(status, json);
    }

    private static string? NullIfEmpty(string? s) => string.IsNullOrEmpty(s) ? null : s;
}

/// <summary>The SDK's metadata_filters: a JSON array of [key, value] pairs (an object is accepted too); all must match.</summary>
public static class MetadataFilters
{
    public static bool TryParse(string? raw, out string? containmentJson)
    {
        containmentJson = null;
        if (string.IsNullOrEmpty(raw)) return true;
        if (raw.Length > 16 * 1024) return false;
        try
        {
            if (!InputText.IsClean(raw)) return false;
            var node = JsonNode.Parse(raw, documentOptions: new JsonDocumentOptions { AllowDuplicateProperties = false });
            var filter = new JsonObject();
            switch (node)
            {
                case JsonArray pairs:
                    foreach (var pair in pairs)
                    {
                        if (pair is not JsonArray { Count: 2 } kv || kv[0]?.GetValueKind() != JsonValueKind.String ||
                            kv[1]?.GetValueKind() != JsonValueKind.String) return false;
                        // A key named twice is refused as it is in the object form, not narrowed to its last value.
                        if (!filter.TryAdd((string)kv[0]!, (string)kv[1]!)) return false;
                    }
                    break;
                case JsonObject obj:
                    foreach (var (k, v) in obj)
                    {
                        if (v?.GetValueKind() != JsonValueKind.String) return false;
                        filter[k] = (string)v!;
                    }
                    break;
                default:
                    return false;
            }
            if (filter.Any(p => !InputText.IsClean(p.Key) || !InputText.IsClean((string)p.Value!))) return false;
            containmentJson = filter.Count == 0 ? null : filter.ToJsonString();
            return true;
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            // InvalidOperationException: a lone surrogate escape in a string.
            return false;
        }
    }
}
