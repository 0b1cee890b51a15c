using System.Net;
using System.Text.Json.Nodes;
using Lava.Billing.Tests.Infrastructure;

namespace Lava.Billing.Tests.Plans;

/// <summary>Plans made through the API, as a merchant would.</summary>
public static class PlanArrange
{
    public static async Task<JsonNode> CreatePlanAsync(this LavaApp.Merchant m, object body)
    {
        var created = await m.Client.PostJsonAsync("/v1/plans", body);
        Assert.True(created.Status == HttpStatusCode.Created, created.Body?.ToJsonString());
        return created.Body!;
    }

    public static Task<JsonNode> CreatePlanAsync(this LavaApp.Merchant m, string name = "Pro", params (string Name, string Cost, string Credit)[] bundles) =>
        m.CreatePlanAsync(new
        {
            name, period_amount = "10", billing_interval = "month",
            credit_bundles = bundles.Select(b => new { name = b.Name, cost = b.Cost, credit_amount = b.Credit }).ToArray(),
        });

    public static string[] BundleIds(this JsonNode plan) =>
        plan["credit_bundles"]!.AsArray().Select(b => (string)b!["credit_bundle_id"]!).ToArray();

    public static string[] BundleNames(this JsonNode plan) =>
        plan["credit_bundles"]!.AsArray().Select(b => (string)b!["name"]!).ToArray();

    public static string[] MeterIds(this JsonNode plan) =>
        plan["linked_meters"]!.AsArray().Select(b => (string)b!["meter_id"]!).ToArray();

    public static Task<long> PlanCountAsync(this LavaApp app) => app.QueryAsync<long>("SELECT count(*) FROM plans");
}
