using System.Buffers;
using System.Text.Json;
using FluentValidation;
using Lava.Billing.Infrastructure.Http;

namespace Lava.Billing.Requests;

/// <summary>
/// <c>POST /v1/requests/batch</c>: many usage reports in one call, each priced and posted as its own idempotent report
/// by <see cref="UsageReporter"/>, so the ledger ends exactly as if they had been sent one by one, in order.
/// </summary>
public static class RequestBatchApi
{
    public const int MaxItems = 1_000;
    /// <summary>1,000 reports with some metadata each; the default 1 MiB would cap a batch near 250 typical items.</summary>
    public const long MaxBodyBytes = 4 * 1024 * 1024;
    /// <summary>Lanes posted at once: enough to overlap commits, few enough that one batch cannot drain the pool.</summary>
    public const int MaxParallelLanes = 8;

    public static RouteGroupBuilder MapRequestBatchApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/requests").WithTags("Requests");
        group.MapPost("/batch", CreateBatch).WithValidation().WithBodyLimit(MaxBodyBytes).WithName("CreateRequestBatch")
            .WithSummary("Report up to 1,000 usages in one call: one outcome per item, in order");
        return group;
    }

    public static async Task<IResult> CreateBatch(Caller caller, CreateRequestBatchBody body, UsageReporter reporter,
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

        await Parallel.ForEachAsync(Lanes(items), new ParallelOptions { MaxDegreeOfParallelism = MaxParallelLanes, CancellationToken = ct },
            async (lane, token) =>
            {
                foreach (var i in lane) outcomes[i] = OutcomeOf(items[i]!, await reporter.ReportAsync(caller.MerchantId, items[i]!, token));
            });
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

    /// <summary>
    /// Splits the valid items into lanes that may post in parallel; within a lane, items post in the order sent.
    /// One customer's reports share a lane: they lock the same balance rows anyway, and in order they draw credits down
    /// and climb graduated tiers exactly as one-by-one calls would. Meter-only reports share their meter's lane (its
    /// usage total), and items that share a request_id share a lane so the first one sent is the one posted.
    /// </summary>
    internal static List<List<int>> Lanes(IReadOnlyList<CreateRequestBody?> items)
    {
        var parent = new int[items.Count];
        var firstByKey = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < items.Count; i++)
        {
            parent[i] = i;
            if (items[i] is not { } item) continue;
            var owner = item.Customer is { } customer ? "c:" + customer : "m:" + item.MeterSlug;
            foreach (var key in (ReadOnlySpan<string>)[owner, "r:" + item.RequestId])
            {
                if (firstByKey.TryGetValue(key, out var first)) Union(parent, first, i);
                else firstByKey[key] = i;
            }
        }
        var lanes = new Dictionary<int, List<int>>();
        for (var i = 0; i < items.Count; i++)
        {
            if (items[i] is null) continue;
            var root = Find(parent, i);
            if (!lanes.TryGetValue(root, out var lane)) lanes[root] = lane = [];
            lane.Add(i);
        }
        return [.. lanes.Values];
    }

    private static int Find(int[] parent, int i)
    {
        while (parent[i] != i) i = parent[i] = parent[parent[i]];
        return i;
    }

    private static void Union(int[] parent, int a, int b)
    {
        var (ra, rb) = (Find(parent, a), Find(parent, b));
        if (ra != rb) parent[Math.Max(ra, rb)] = Math.Min(ra, rb);
    }

    private static ItemOutcome OutcomeOf(CreateRequestBody item, ReportOutcome outcome) => outcome switch
    {
        ReportOutcome.Created c => new(BatchItemStatus.Created, item.RequestId, c.Response, null),
        ReportOutcome.Replayed r => new(BatchItemStatus.Replayed, item.RequestId, r.Response, null),
        ReportOutcome.Refused f => new(f.Problem switch
        {
            { Code: "idempotency_conflict" } => BatchItemStatus.Conflict,
            { StatusCode: StatusCodes.Status400BadRequest } => BatchItemStatus.Invalid,
            { StatusCode: StatusCodes.Status404NotFound } => BatchItemStatus.NotFound,
            _ => BatchItemStatus.Refused,
        }, item.RequestId, null, f.Problem),
        _ => throw new InvalidOperationException($"unexpected outcome {outcome}"),
    };

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
