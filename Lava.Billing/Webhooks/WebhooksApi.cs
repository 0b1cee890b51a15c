using Lava.Billing.Infrastructure.Http;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Lava.Billing.Webhooks;

public static class WebhooksApi
{
    public static RouteGroupBuilder MapWebhooksApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/webhooks").WithTags("Webhooks");
        group.MapGet("/", List).WithName("ListWebhooks").WithSummary("List webhook endpoints");
        group.MapPost("/", Create).WithValidation().WithName("CreateWebhook").WithSummary("Create a webhook endpoint (its secret shown once)");
        group.MapGet("/{webhookId}", Retrieve).WithName("RetrieveWebhook").WithSummary("Retrieve a webhook endpoint");
        group.MapPatch("/{webhookId}", Update).WithValidation().WithName("UpdateWebhook").WithSummary("Change name, url, event types or status");
        group.MapDelete("/{webhookId}", Delete).WithName("DeleteWebhook").WithSummary("Delete a webhook endpoint");
        group.MapPost("/{webhookId}/roll_secret", RollSecret).WithValidation().WithName("RollWebhookSecret")
            .WithSummary("Replace the signing secret; the old one keeps signing during an overlap");
        group.MapGet("/{webhookId}/deliveries", Deliveries).WithName("ListWebhookDeliveries").WithSummary("The endpoint's delivery log, newest first");
        group.MapPost("/{webhookId}/deliveries/{deliveryId}/resend", Resend).WithName("ResendWebhookDelivery")
            .WithSummary("Send a delivery's event again");
        return group;
    }

    public static async Task<Results<Ok<ListResponse<RestWebhook>>, ProblemResult>> List(
        Caller caller, WebhookStore webhooks, string? cursor, string? limit, CancellationToken ct)
    {
        if (!Paging.TryRead(cursor, limit, out var page, out var problem)) return problem!;
        var rows = await webhooks.ListAsync(caller.MerchantId, page.After, page.Limit + 1, ct);
        return TypedResults.Ok(Paging.Envelope(rows, page.Limit, r => r.WebhookId, RestWebhook.From));
    }

    public static async Task<Created<RestWebhookCreate>> Create(
        Caller caller, WebhookStore webhooks, WebhookSecrets secrets, CreateWebhookParams body, CancellationToken ct)
    {
        var secret = WebhookSecrets.Generate();
        var row = await webhooks.CreateAsync(caller.MerchantId, body.Name!, body.Url!, body.EventTypes, secrets.Seal(secret), ct);
        return TypedResults.Created($"/v1/webhooks/{row.WebhookId}", RestWebhookCreate.From(row, secret));
    }

    public static async Task<Results<Ok<RestWebhook>, ProblemResult>> Retrieve(
        Caller caller, WebhookStore webhooks, string webhookId, CancellationToken ct) =>
        await webhooks.FindAsync(caller.MerchantId, webhookId, ct) is { } row
            ? TypedResults.Ok(RestWebhook.From(row))
            : Problems.NotFound("webhook", webhookId);

    public static async Task<Results<Ok<RestWebhook>, ProblemResult>> Update(
        Caller caller, WebhookStore webhooks, string webhookId, UpdateWebhookParams body, CancellationToken ct)
    {
        var changes = new WebhookChanges(body.Name, body.Url, body.EventTypes, body.Status.IsSet ? body.Status.Value == "enabled" : null);
        return await webhooks.UpdateAsync(caller.MerchantId, webhookId, changes, ct) is { } row
            ? TypedResults.Ok(RestWebhook.From(row))
            : Problems.NotFound("webhook", webhookId);
    }

    public static async Task<Results<Ok<DeletedResponse>, ProblemResult>> Delete(
        Caller caller, WebhookStore webhooks, string webhookId, CancellationToken ct) =>
        await webhooks.DeleteAsync(caller.MerchantId, webhookId, ct)
            ? TypedResults.Ok(new DeletedResponse(webhookId, true))
            : Problems.NotFound("webhook", webhookId);

    public static async Task<Results<Ok<RestWebhookCreate>, ProblemResult>> RollSecret(
        Caller caller, WebhookStore webhooks, WebhookSecrets secrets, WebhookOptions options, TimeProvider clock, string webhookId,
        RollWebhookSecretParams body, CancellationToken ct)
    {
        var secret = WebhookSecrets.Generate();
        var overlapUntil = clock.GetUtcNow().AddSeconds(body.OverlapSeconds ?? options.DefaultSecretOverlapSeconds);
        return await webhooks.RollSecretAsync(caller.MerchantId, webhookId, secrets.Seal(secret), overlapUntil, ct) is { } row
            ? TypedResults.Ok(RestWebhookCreate.From(row, secret))
            : Problems.NotFound("webhook", webhookId);
    }

    public static async Task<Results<Ok<ListResponse<RestWebhookDelivery>>, ProblemResult>> Deliveries(
        Caller caller, WebhookStore webhooks, WebhookDeliveryStore deliveries, string webhookId, string? cursor, string? limit,
        CancellationToken ct)
    {
        if (!Paging.TryRead(cursor, limit, out var page, out var problem)) return problem!;
        if (await webhooks.FindAsync(caller.MerchantId, webhookId, ct) is null) return Problems.NotFound("webhook", webhookId);
        var rows = await deliveries.ListAsync(caller.MerchantId, webhookId, page.After, page.Limit + 1, ct);
        return TypedResults.Ok(Paging.Envelope(rows, page.Limit, r => r.DeliveryId, RestWebhookDelivery.From));
    }

    public static async Task<Results<Accepted<RestWebhookDelivery>, ProblemResult>> Resend(
        Caller caller, WebhookDeliveryStore deliveries, string webhookId, string deliveryId, CancellationToken ct) =>
        await deliveries.ResendAsync(caller.MerchantId, webhookId, deliveryId, ct) is { } row
            ? TypedResults.Accepted((string?)null, RestWebhookDelivery.From(row))
            : Problems.NotFound("webhook delivery", deliveryId);
}
