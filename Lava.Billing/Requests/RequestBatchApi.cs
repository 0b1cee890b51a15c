using System.Buffers;
using System.Text.Json;
using FluentValidation;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Requests.Posting;

namespace Lava.Billing.Requests;

/// <summary>
/// <c>POST /v1/requests/batch</c>: many usage reports in one call, each priced and posted as its own idempotent report
/// by <see cref="ReportPoster"/>, which plans them in order, so the ledger ends exactly as if they had
/// been sent one by one, in order, while a whole chunk shares one database transaction.
/// </summary>
public static class RequestBatchApi
{
    public const int MaxItems = 1_000;
    /// <summary>1,000 reports with some metadata each; the default 1 MiB would cap a batch near 250 typical items.</summary>
    public const long MaxBodyBytes = 4 * 1024 * 1024;
    /// <summary>
    /// Reports per database transaction, as group commit's default batch: one commit for many reports, while the locks
    /// of one transaction (every customer in it) stay few and short.
    /// </summary>
    public const int MaxReportsPerTransaction = 128;

    public static RouteGroupBuilder MapRequestBatchApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/requests").WithTags("Requests");
        group.MapPost("/batch", CreateBatch).WithValidation().WithMerchantTurn(MerchantLimits.Kind.Batches).WithBodyLimit(MaxBodyBytes)
            .WithName("CreateRequestBatch")
            .WithSummary("Report up to 1,000 usages in one call: one outcome per item, in order");
        return group;
    }

    public static async Task<IResult> CreateBatch(Caller caller, CreateRequestBatchBody body, ReportPoster reporter,
        IValidator<CreateRequestBody> validator, CancellationToken ct)
    {
        var raw = body.Requests!;
        if (raw.Count > MaxItems) return Problems.BatchTooLarge(raw.Count, MaxItems);

        var items = new CreateRequestBody?[raw.Count];
        var outcomes = new ItemOutcome[raw.Count];
        for (var i = 0; i < raw.Count; i++)
        {
            (items[i], var refused) = Read(raw[i], validator);
            if (refused is not null) outcomes[i] = new ItemOutcome(BatchItemStatus.Invalid, RequestIdOf(raw[i]), null, refused);
        }

        // Chunks post one after the other, so items keep the order they were sent in across chunks too.
        var valid = Enumerable.Range(0, items.Length).Where(i => items[i] is not null).ToList();
        foreach (var chunk in valid.Chunk(MaxReportsPerTransaction))
        {
            var posted = await reporter.PostAsync(chunk.Select(i => new ReportItem(caller.MerchantId, items[i]!, caller.SecretKeyId)).ToList(), ct);
            for (var j = 0; j < chunk.Length; j++) outcomes[chunk[j]] = OutcomeOf(items[chunk[j]]!, posted[j]);
        }
        return Results.Bytes(Envelope(outcomes), "application/json");
    }

    private sealed record ItemOutcome(string Status, string? RequestId, string? RequestJson, ProblemResult? Error);

    /// <summary>The item, or its problem when it cannot be posted as it is: not an object, wrong types, invalid fields.</summary>
    private static (CreateRequestBody? Item, ProblemResult? Problem) Read(JsonElement element, IValidator<CreateRequestBody> validator)
    {
        if (element.ValueKind != JsonValueKind.Object) return (null, Problems.MalformedJson("Each item must be a usage report object."));
        CreateRequestBody item;
        try
        {
            item = element.Deserialize<CreateRequestBody>(LavaJson.Options)!;
        }
        catch (JsonException e)
        {
            return (null, ErrorHandling.FromJson(e));
        }
        var result = validator.Validate(item);
        return result.IsValid ? (item, null) : (null, Problems.Validation(result.ToDictionary()));
    }

    private static string? RequestIdOf(JsonElement element) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty("request_id", out var id) && id.ValueKind == JsonValueKind.String
            ? id.GetString()
            : null;

    private static ItemOutcome OutcomeOf(CreateRequestBody item, ReportOutcome outcome) => outcome switch
    {
        ReportOutcome.Created c => new(BatchItemStatus.Created, item.RequestId, c.Response, null),
        ReportOutcome.Replayed r => new(BatchItemStatus.Replayed, item.RequestId, r.Response, null),
        ReportOutcome.Refused f => OutcomeOf(item, ReportProblems.Of(f.Refusal)),
        _ => throw new InvalidOperationException($"unexpected outcome {outcome}"),
    };

    private static ItemOutcome OutcomeOf(CreateRequestBody item, ProblemResult problem) => new(problem switch
        {
            { Code: "idempotency_conflict" } => BatchItemStatus.Conflict,
            { StatusCode: StatusCodes.Status400BadRequest } => BatchItemStatus.Invalid,
            { StatusCode: StatusCodes.Status404NotFound } => BatchItemStatus.NotFound,
            _ => BatchItemStatus.Refused,
        }, item.RequestId, null, problem);

    // Stored responses are already JSON: they go into the envelope as they are.
    private static ReadOnlyMemory<byte> Envelope(ItemOutcome[] outcomes)
    {
        var buffer = new ArrayBufferWriter<byte>(512 + outcomes.Length * 1024);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            w.WriteStartArray("data");
            for (var i = 0; i < outcomes.Length; i++)
            {
                var o = outcomes[i];
                w.WriteStartObject();
                w.WriteNumber("index", i);
                w.WriteString("status", o.Status);
                w.WriteString("request_id", o.RequestId);
                if (o.RequestJson is not null)
                {
                    w.WritePropertyName("request");
                    w.WriteRawValue(o.RequestJson, skipInputValidation: true);
                }
                if (o.Error is not null)
                {
                    w.WritePropertyName("error");
                    JsonSerializer.Serialize(w, o.Error.Body, LavaJson.Options);
                }
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteEndObject();
        }
        return buffer.WrittenMemory;
    }
}
