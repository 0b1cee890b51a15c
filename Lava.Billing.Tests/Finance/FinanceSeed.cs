using System.Globalization;
using System.Net;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Finance;

/// <summary>Reports and clocks for finance tests.</summary>
public static class FinanceSeed
{
    public static async Task<string> ReportAsync(this LavaApp.Merchant m, string requestId, string? customerId, string meterSlug,
        long inputTokens = 1_000, string? cost = null, Dictionary<string, string>? metadata = null)
    {
        var r = await m.Client.PostJsonAsync("/v1/requests", new Dictionary<string, object?>
        {
            ["request_id"] = requestId, ["customer_id"] = customerId, ["meter_slug"] = meterSlug, ["input_tokens"] = inputTokens,
            ["cost"] = cost, ["metadata"] = metadata,
        });
        Assert.True(r.Status == HttpStatusCode.Created, r.Body?.ToJsonString());
        return (string)r.Body!["transaction_id"]!;
    }

    /// <summary>The database's clock, between two postings: every entry committed before has created_at below it.</summary>
    public static async Task<string> DatabaseNowAsync(this LavaApp app)
    {
        var now = await app.QueryAsync<DateTime>("SELECT clock_timestamp()");
        return now.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);
    }

    public static decimal Dec(this System.Text.Json.Nodes.JsonNode? node) => decimal.Parse((string)node!, CultureInfo.InvariantCulture);

    public static async Task<string> ReadOnlyKeyAsync(this LavaApp.Merchant m)
    {
        var r = await m.Client.PostJsonAsync("/v1/secret_keys", new { name = "finance", scope = "read_only" });
        Assert.Equal(HttpStatusCode.Created, r.Status);
        return (string)r.Body!["secret_key"]!;
    }
}
