using System.Text.Json;
using System.Text.Json.Nodes;
using Lava.Billing.Customers;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Npgsql;

namespace Lava.Billing.Webhooks;

/// <summary>
/// Delivered bodies, Lava's shape: <c>{"event": "...", "data": {...}}</c>. Customer events carry the customer as the
/// customers API shows it (its active subscription in short, or null); the balance event adds the balances the
/// change left, as they were at its commit (so do the low-balance and credits-exhausted events, derived from it).
/// Other events carry what their trigger recorded (a subscription, expired holds).
/// </summary>
public static class WebhookPayloads
{
    public static async Task<IReadOnlyList<string>> RenderAsync(NpgsqlConnection connection, NpgsqlTransaction tx,
        IReadOnlyList<PendingEvent> events, CancellationToken ct)
    {
        var keys = events.Where(e => e.CustomerId is not null && e.Type.StartsWith("customer.", StringComparison.Ordinal))
            .Select(e => (e.MerchantId, e.CustomerId!)).Distinct().ToList();
        var customers = keys.Count == 0
            ? []
            : await CustomerStore.FindManyAsync(connection, tx, keys, ct);
        return events.Select(e => Render(e, e.CustomerId is { } id ? customers.GetValueOrDefault((e.MerchantId, id)) : null)).ToList();
    }

    public static string Render(PendingEvent e, CustomerRow? customer)
    {
        JsonNode data;
        if (e.Type.StartsWith("customer.", StringComparison.Ordinal))
        {
            data = customer is null
                ? new JsonObject { ["customer_id"] = e.CustomerId }
                : JsonSerializer.SerializeToNode(RestCustomer.From(customer), LavaJson.Options)!;
            if (e.Type is WebhookEvents.BalanceUpdated or WebhookEvents.BalanceLow or WebhookEvents.CreditsExhausted)
                data["balance"] = Balance(e.Snapshot);
            if (e.Type == WebhookEvents.BalanceLow) data["low_balance_threshold"] = Threshold(e.Snapshot);
        }
        else
        {
            data = JsonNode.Parse(e.Snapshot)!;
        }
        return new JsonObject { ["event"] = e.Type, ["data"] = data }.ToJsonString();
    }

    private static string Threshold(string snapshot)
    {
        using var doc = JsonDocument.Parse(snapshot);
        return Money.Format(doc.RootElement.GetProperty("low_balance_threshold").GetDecimal());
    }

    private static JsonObject Balance(string snapshot)
    {
        using var doc = JsonDocument.Parse(snapshot);
        var root = doc.RootElement;
        var cycle = root.GetProperty("cycle_remaining").GetDecimal();
        var bundle = root.GetProperty("bundle_remaining").GetDecimal();
        return new JsonObject
        {
            ["credits_remaining"] = Money.Format(cycle + bundle),
            ["cycle_remaining"] = Money.Format(cycle),
            ["bundle_remaining"] = Money.Format(bundle),
            ["receivable"] = Money.Format(root.GetProperty("receivable").GetDecimal()),
        };
    }
}
