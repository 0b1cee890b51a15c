using System.Text.Json;
using Lava.Billing.Infrastructure.Http;
using Lava.Billing.Merchants;
using Lava.Billing.Pricing;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Lava.Billing.Meters;

public static class MetersApi
{
    public static RouteGroupBuilder MapMetersApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/meters").WithTags("Meters");
        group.MapGet("/", List).WithName("ListMeters").WithSummary("List live meters");
        group.MapPost("/", Create).WithValidation()
            .WithName("CreateMeter").WithSummary("Create a meter with its first price");
        group.MapGet("/{meterIdOrSlug}", Retrieve).WithName("RetrieveMeter").WithSummary("A live meter by id or slug");
        group.MapPatch("/{meterIdOrSlug}", Update).WithValidation()
            .WithName("UpdateMeter").WithSummary("Rename a meter or give it new tiers (a new price version)");
        group.MapDelete("/{meterIdOrSlug}", Delete)
            .WithName("DeleteMeter").WithSummary("Delete a meter (kept, soft-deleted, once it has usage; 409 while a plan links it, unless force=true)");
        return group;
    }

    public static async Task<Results<Ok<ListResponse<RestMeter>>, ProblemResult>> List(
        Caller caller, MeterStore meters, string? cursor, string? limit, CancellationToken ct)
    {
        if (!Paging.TryRead(cursor, limit, out var page, out var problem)) return problem!;
        var rows = await meters.ListAsync(caller.MerchantId, page.After, page.Limit + 1, ct);
        return TypedResults.Ok(Paging.Envelope(rows, page.Limit, r => r.MeterId, RestMeter.From));
    }

    public static async Task<Results<Created<RestMeter>, ProblemResult>> Create(
        Caller caller, MeterStore meters, CreateMeterParams body, CancellationToken ct)
    {
        PriceCalculator.TryParseRateType(body.RateType, out var rateType);
        PriceCalculator.TryParseTierType(body.TierType, out var tierType);
        var meter = new NewMeter(body.Name!, body.MeterSlug, rateType, tierType, body.Tiers!.ToTiers());
        var row = await meters.CreateAsync(caller.MerchantId, meter, ct);
        if (row is null)
            return Problems.Conflict("meter_slug_taken", $"A live meter already has the slug '{body.MeterSlug}'.");
        return TypedResults.Created($"/v1/meters/{row.MeterId}", RestMeter.From(row));
    }

    public static async Task<Results<Ok<RestMeter>, ProblemResult>> Retrieve(
        Caller caller, MeterStore meters, string meterIdOrSlug, CancellationToken ct) =>
        await meters.FindAsync(caller.MerchantId, meterIdOrSlug, ct) is { } row
            ? TypedResults.Ok(RestMeter.From(row))
            : NotFound(meterIdOrSlug);

    public static async Task<Results<Ok<RestMeter>, ProblemResult>> Update(
        Caller caller, MeterStore meters, string meterIdOrSlug, UpdateMeterParams body, CancellationToken ct)
    {
        var immutables = new List<(string Field, string? Value)>();
        AddClaim(immutables, "meter_slug", body.MeterSlug);
        AddClaim(immutables, "rate_type", body.RateType);
        AddClaim(immutables, "tier_type", body.TierType);
        var changes = new MeterChanges(body.Name, body.Tiers?.ToTiers(), immutables);
        return await meters.UpdateAsync(caller.MerchantId, meterIdOrSlug, changes, ct) switch
        {
            MeterUpdate.Updated u => TypedResults.Ok(RestMeter.From(u.Meter)),
            MeterUpdate.ImmutableField f => Problems.ImmutableField(f.Field),
            _ => NotFound(meterIdOrSlug),
        };
    }

    // A JSON null is no claim at all; a non-string can never equal the stored value, so it is refused as a change.
    private static void AddClaim(List<(string Field, string? Value)> claims, string field, JsonElement? sent)
    {
        if (sent is { ValueKind: not JsonValueKind.Null } value)
            claims.Add((field, value.ValueKind == JsonValueKind.String ? value.GetString() : null));
    }

    public static async Task<Results<Ok<DeletedResponse>, ProblemResult>> Delete(
        Caller caller, MeterStore meters, string meterIdOrSlug, bool? force, CancellationToken ct) =>
        await meters.DeleteAsync(caller.MerchantId, meterIdOrSlug, force == true, ct) switch
        {
            (MeterStore.DeleteOutcome.NotFound, _, _) => NotFound(meterIdOrSlug),
            (MeterStore.DeleteOutcome.LinkedToPlans, var meterId, var plans) => Problems.Conflict("meter_in_use",
                $"Meter '{meterId}' is linked to plan(s) {string.Join(", ", plans)}: remove it from them first, " +
                "or delete with ?force=true to take it off those plans too."),
            (_, var meterId, _) => TypedResults.Ok(new DeletedResponse(meterId!, true)),
        };

    // The routes take an id or a slug; the message says which one was looked for.
    private static ProblemResult NotFound(string meterIdOrSlug) =>
        Problems.NotFound("meter", meterIdOrSlug, meterIdOrSlug.StartsWith("mtr_", StringComparison.Ordinal) ? "id" : "slug");
}
