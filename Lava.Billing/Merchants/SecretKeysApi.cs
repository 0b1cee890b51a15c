using FluentValidation;
using Lava.Billing.Infrastructure.Http;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Lava.Billing.Merchants;

public sealed record CreateSecretKeyRequest(string? Name, string? Scope);

public record SecretKeyResponse(string SecretKeyId, string Name, string SecretKeyHint, string Scope, DateTime CreatedAt)
{
    public static SecretKeyResponse From(SecretKeyRow r) => new(r.SecretKeyId, r.Name, r.SecretKeyHint, r.Scope, r.CreatedAt);
}

public sealed record SecretKeyCreatedResponse(string SecretKeyId, string Name, string SecretKeyHint, string Scope, DateTime CreatedAt, string SecretKey)
    : SecretKeyResponse(SecretKeyId, Name, SecretKeyHint, Scope, CreatedAt);

public sealed class CreateSecretKeyValidator : AbstractValidator<CreateSecretKeyRequest>
{
    public CreateSecretKeyValidator()
    {
        RuleFor(r => r.Name).NotEmpty().MaximumLength(200);
        RuleFor(r => r.Scope).Must(s => s is null or KeyScopes.Full or KeyScopes.ReadOnly)
            .WithMessage($"must be '{KeyScopes.Full}' or '{KeyScopes.ReadOnly}'");
    }
}

public static class SecretKeysApi
{
    public static RouteGroupBuilder MapSecretKeysApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1/secret_keys").WithTags("Secret keys");
        group.MapGet("/", List).WithName("ListSecretKeys").WithSummary("List live secret keys");
        group.MapPost("/", Create).WithValidation().WithName("CreateSecretKey").WithSummary("Create a secret key (shown once)");
        group.MapDelete("/{secretKeyId}", Revoke).WithName("RevokeSecretKey").WithSummary("Revoke a secret key at once");
        return group;
    }

    public static async Task<Results<Ok<ListResponse<SecretKeyResponse>>, ProblemResult>> List(
        Caller caller, SecretKeyStore keys, string? cursor, string? limit, CancellationToken ct)
    {
        if (!Paging.TryRead(cursor, limit, out var page, out var problem)) return problem!;
        var rows = await keys.ListAsync(caller.MerchantId, page.After, page.Limit + 1, ct);
        return TypedResults.Ok(Paging.Envelope(rows, page.Limit, r => r.SecretKeyId, SecretKeyResponse.From));
    }

    public static async Task<Created<SecretKeyCreatedResponse>> Create(
        Caller caller, SecretKeyStore keys, CreateSecretKeyRequest body, CancellationToken ct)
    {
        var (row, secret) = await keys.CreateAsync(caller.MerchantId, body.Name!, body.Scope ?? KeyScopes.Full, ct);
        return TypedResults.Created($"/v1/secret_keys/{row.SecretKeyId}",
            new SecretKeyCreatedResponse(row.SecretKeyId, row.Name, row.SecretKeyHint, row.Scope, row.CreatedAt, secret));
    }

    public static async Task<Results<Ok<DeletedResponse>, ProblemResult>> Revoke(
        Caller caller, SecretKeyStore keys, string secretKeyId, CancellationToken ct) =>
        await keys.RevokeAsync(caller.MerchantId, secretKeyId, ct) switch
        {
            SecretKeyStore.RevokeOutcome.Revoked => TypedResults.Ok(new DeletedResponse(secretKeyId, true)),
            SecretKeyStore.RevokeOutcome.LastKey => Problems.Unprocessable("last_secret_key",
                "A merchant must keep at least one secret key: create another before revoking this one."),
            _ => Problems.NotFound("secret key", secretKeyId),
        };
}
