using System.Text.Json;

namespace Lava.Billing.Requests;

/// <summary>
/// Up to <see cref="RequestBatchApi.MaxItems"/> usage reports. Items stay raw JSON until each is read on its own, so
/// one item of the wrong shape is refused alone instead of failing the whole call.
/// </summary>
public sealed record CreateRequestBatchBody(List<JsonElement>? Requests);

/// <summary>What became of one item, in the order sent.</summary>
public static class BatchItemStatus
{
    public const string Created = "created";
    public const string Replayed = "replayed";
    public const string Conflict = "conflict";
    public const string Invalid = "invalid";
    public const string NotFound = "not_found";
    /// <summary>Any other refusal the single-report endpoint answers, e.g. 403 meter_not_on_plan or 409 hold_not_active.</summary>
    public const string Refused = "refused";
}
