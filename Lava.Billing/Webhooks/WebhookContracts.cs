using System.Text.Json.Serialization;
using Lava.Billing.Infrastructure;

namespace Lava.Billing.Webhooks;

/// <summary>The SDK's CreateWebhookParams, plus which event types the endpoint takes (null or absent: all).</summary>
public sealed record CreateWebhookParams(string? Name, string? Url, string[]? EventTypes);

/// <summary>The SDK's UpdateWebhookParams, plus event_types and status ('enabled' or 'disabled').</summary>
public sealed record UpdateWebhookParams(Optional<string> Name, Optional<string> Url, Optional<string[]?> EventTypes, Optional<string> Status);

/// <summary>How long the previous secret keeps signing after a roll (default Webhooks:DefaultSecretOverlapSeconds).</summary>
public sealed record RollWebhookSecretParams(int? OverlapSeconds);

/// <summary>The SDK's RestWebhook, plus event_types (null: all), status and why the endpoint was disabled.</summary>
public record RestWebhook(
    string WebhookId, string Name, string Url, DateTime CreatedAt, IReadOnlyList<string>? EventTypes, string Status, string? DisabledReason)
{
    public static RestWebhook From(WebhookRow r) =>
        new(r.WebhookId, r.Name, r.Url, r.CreatedAt, r.EventTypes, r.DisabledAt is null ? "enabled" : "disabled", r.DisabledReason);
}

/// <summary>The SDK's RestWebhookCreate: the webhook with its signing secret, shown this once.</summary>
public sealed record RestWebhookCreate(
    string WebhookId, string Name, string Url, DateTime CreatedAt, IReadOnlyList<string>? EventTypes, string Status, string? DisabledReason,
    string WebhookSecret)
    : RestWebhook(WebhookId, Name, Url, CreatedAt, EventTypes, Status, DisabledReason)
{
    public static RestWebhookCreate From(WebhookRow r, string secret)
    {
        var w = RestWebhook.From(r);
        return new(w.WebhookId, w.Name, w.Url, w.CreatedAt, w.EventTypes, w.Status, w.DisabledReason, secret);
    }
}

/// <summary>One delivery of one event to one endpoint.</summary>
public sealed record RestWebhookDelivery(
    string DeliveryId, string WebhookId, string EventId, string Event, string Status, int Attempts,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.Never)] DateTime? NextAttemptAt,
    DateTime? LastAttemptAt, int? LastResponseCode, string? LastError, DateTime? DeliveredAt, DateTime CreatedAt)
{
    public static RestWebhookDelivery From(DeliveryRow d) => new(d.DeliveryId, d.WebhookId, WebhookDispatcher.EventId(d.EventSeq), d.Event,
        d.Status, d.Attempts, d.NextAttemptAt, d.LastAttemptAt, d.LastStatusCode, d.LastError, d.DeliveredAt, d.CreatedAt);
}
