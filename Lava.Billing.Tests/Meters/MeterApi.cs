using System.Net;
using System.Text.Json.Nodes;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Meters;

/// <summary>Arranging meters through the API, the way a merchant would.</summary>
public static class MeterApi
{
    public static object Tiers(params (string Start, string Rate)[] tiers) =>
        tiers.Select(t => new { start = t.Start, rate = t.Rate }).ToArray();

    public static object Body(string name = "Tokens", string? slug = null, object? tiers = null, string rateType = "fixed", string tierType = "tokens_1m") =>
        slug is null
            ? new { name, rate_type = rateType, tier_type = tierType, tiers = tiers ?? Tiers(("0", "5"), ("1000000", "3")) }
            : new { name, meter_slug = slug, rate_type = rateType, tier_type = tierType, tiers = tiers ?? Tiers(("0", "5"), ("1000000", "3")) };

    public static async Task<JsonNode> CreateMeterAsync(this HttpClient client, string name = "Tokens", string? slug = null, object? tiers = null)
    {
        var r = await client.PostJsonAsync("/v1/meters", Body(name, slug, tiers));
        Assert.True(r.Status == HttpStatusCode.Created, $"creating a meter: {(int)r.Status} {r.Body?.ToJsonString()}");
        return r.Body!;
    }
}
