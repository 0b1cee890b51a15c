using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Lava.Billing.SpendKeys;

public static class SpendKeysApi
{
    public static IServiceCollection AddSpendKeys(this IServiceCollection services) => services.AddSingleton<SpendKeyStore>().AddSingleton<SpendKeyLimits>().AddHostedService<SpendKeySettler>().AddSpendKeyGateway();

    public static RouteGroupBuilder MapSpendKeysApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/spend_keys").WithTags("Spend keys");
        group.MapPost("/", Create).WithValidation().WithName("CreateSpendKey").WithSummary("Create a spend key (its key is shown once)");
        group.MapGet("/", List).WithName("ListSpendKeys").WithSummary("List live spend keys");
        group.MapGet("/{spendKeyId}", Retrieve).WithName("RetrieveSpendKey").WithSummary("Retrieve a spend key");
        group.MapPut("/{spendKeyId}", Update).WithValidation().WithName("UpdateSpendKey").WithSummary("Change a spend key's name, status or limits");
        group.MapDelete("/{spendKeyId}", Revoke).WithName("RevokeSpendKey").WithSummary("Revoke a spend key at once");
        group.MapPost("/{spendKeyId}/rotate", Rotate).WithName("RotateSpendKey").WithSummary("Replace a spend key's key, keeping its limits and history");
        return group;
    }

    public static async Task<Created<RestSpendKeyCreated>> Create(Caller caller, SpendKeyStore keys, CreateSpendKeyParams body, CancellationToken ct)
    {
        var settings = new SpendKeySettings(body.Name!, body.Status ?? SpendKeyStatus.Active, body.RequestShape ?? RequestShapes.OpenAi,
            body.AllowedModels?.ToArray(), body.AllowedProviders?.ToArray(), body.SpendLimit?.Amount, body.SpendLimit?.Cycle,
            body.RequestLimit?.Count, body.RequestLimit?.Cycle, body.RateLimit?.Rpm, body.RateLimit?.Burst, body.ExpiresAt?.UtcDateTime);
        var (row, key) = await keys.CreateAsync(caller.MerchantId, settings, ct);
        return TypedResults.Created($"/v1/spend_keys/{row.SpendKeyId}", RestSpendKeyCreated.From(row, key));
    }

    public static async Task<Results<Ok<ListResponse<RestSpendKey>>, ProblemResult>> List(
        Caller caller, SpendKeyStore keys, string? cursor, string? limit, CancellationToken ct)
    {
        if (!Paging.TryRead(cursor, limit, out var page, out var problem)) return problem!;
        var rows = await keys.ListAsync(caller.MerchantId, page.After, page.Limit + 1, ct);
        return TypedResults.Ok(Paging.Envelope(rows, page.Limit, r => r.SpendKeyId, RestSpendKey.From));
    }

    public static async Task<Results<Ok<RestSpendKey>, ProblemResult>> Retrieve(Caller caller, SpendKeyStore keys, string spendKeyId, CancellationToken ct) =>
        await keys.GetAsync(caller.MerchantId, spendKeyId, ct) is { } row ? TypedResults.Ok(RestSpendKey.From(row)) : Problems.NotFound("spend key", spendKeyId);

    public static async Task<Results<Ok<RestSpendKey>, ProblemResult>> Update(
        Caller caller, SpendKeyStore keys, string spendKeyId, UpdateSpendKeyParams body, CancellationToken ct)
    {
        var row = await keys.UpdateAsync(caller.MerchantId, spendKeyId, s => Apply(s, body), ct);
        return row is null ? Problems.NotFound("spend key", spendKeyId) : TypedResults.Ok(RestSpendKey.From(row));
    }

    /// <summary>An absent member keeps the key's value; an explicit null clears a limit or a list.</summary>
    private static SpendKeySettings Apply(SpendKeySettings s, UpdateSpendKeyParams p) => s with
    {
        Name = p.Name.IsSet ? p.Name.Value! : s.Name,
        Status = p.Status.IsSet ? p.Status.Value! : s.Status,
        RequestShape = p.RequestShape.IsSet ? p.RequestShape.Value! : s.RequestShape,
        AllowedModels = p.AllowedModels.IsSet ? p.AllowedModels.Value?.ToArray() : s.AllowedModels,
        AllowedProviders = p.AllowedProviders.IsSet ? p.AllowedProviders.Value?.ToArray() : s.AllowedProviders,
        SpendLimitAmount = p.SpendLimit.IsSet ? p.SpendLimit.Value?.Amount : s.SpendLimitAmount,
        SpendLimitCycle = p.SpendLimit.IsSet ? p.SpendLimit.Value?.Cycle : s.SpendLimitCycle,
        RequestLimitCount = p.RequestLimit.IsSet ? p.RequestLimit.Value?.Count : s.RequestLimitCount,
        RequestLimitCycle = p.RequestLimit.IsSet ? p.RequestLimit.Value?.Cycle : s.RequestLimitCycle,
        RateLimitRpm = p.RateLimit.IsSet ? p.RateLimit.Value?.Rpm : s.RateLimitRpm,
        RateLimitBurst = p.RateLimit.IsSet ? p.RateLimit.Value?.Burst : s.RateLimitBurst,
        ExpiresAt = p.ExpiresAt.IsSet ? p.ExpiresAt.Value?.UtcDateTime : s.ExpiresAt,
    };

    public static async Task<Results<Ok<SpendKeyRevokedResponse>, ProblemResult>> Revoke(Caller caller, SpendKeyStore keys, string spendKeyId, CancellationToken ct) =>
        await keys.RevokeAsync(caller.MerchantId, spendKeyId, ct) ? TypedResults.Ok(new SpendKeyRevokedResponse(true)) : Problems.NotFound("spend key", spendKeyId);

    public static async Task<Results<Ok<RestSpendKeyCreated>, ProblemResult>> Rotate(Caller caller, SpendKeyStore keys, string spendKeyId, CancellationToken ct) =>
        await keys.RotateAsync(caller.MerchantId, spendKeyId, ct) is var (row, key)
            ? TypedResults.Ok(RestSpendKeyCreated.From(row, key))
            : Problems.NotFound("spend key", spendKeyId);
}
