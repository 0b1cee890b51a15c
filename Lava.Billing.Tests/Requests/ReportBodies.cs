using System.Text.Json;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Requests;
using Lava.Billing.Requests.Posting;

namespace Lava.Billing.Tests.Requests;

/// <summary>Report bodies for tests that post through <see cref="ReportPoster"/> directly, past the HTTP edge.</summary>
public static class ReportBodies
{
    /// <summary>A body read from the wire JSON a client would send, so names and defaults are the API's own.</summary>
    public static CreateRequestBody Of(string id, string? customer, string meter, long tokens = 0, string? cost = null, decimal? seconds = null) =>
        JsonSerializer.Deserialize<CreateRequestBody>(JsonSerializer.Serialize(new
        {
            request_id = id, customer_id = customer, meter_slug = meter, input_tokens = tokens, cost, input_seconds = seconds,
        }), LavaJson.Options)!;
}
