using Lava.Billing.Infrastructure.Http;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Lava.Billing.Forward;

public static class ModelPricesApi
{
    // The model list is small reference data; this bounds it all the same.
    private const int MaxModels = 1000;

    public static RouteGroupBuilder MapModelPricesApi(this IEndpointRouteBuilder routes)
    {
        var group = routes.MapGroup("/v1").WithTags("Model prices");
        group.MapGet("/model_prices", List).WithName("ListModelPrices")
            .WithSummary("List the provider price each model is costed with, by model");
        group.MapPost("/model_prices", Create).WithValidation().WithName("CreateModelPrice")
            .WithSummary("Price a model for this merchant: a new version that wins over the default");
        group.MapGet("/models", Models).WithName("ListModels").WithSummary("OpenAI-style list of the priced models");
        return group;
    }

    public static async Task<Results<Ok<ListResponse<RestModelPrice>>, ProblemResult>> List(
        Caller caller, ModelPriceStore store, string? cursor, string? limit, CancellationToken ct)
    {
        if (!Paging.TryRead(cursor, limit, out var page, out var problem)) return problem!;
        var rows = await store.ListCurrentAsync(caller.MerchantId, page.After, page.Limit + 1, ct);
        return TypedResults.Ok(Paging.Envelope(rows, page.Limit, r => r.Model, RestModelPrice.From));
    }

    public static async Task<Results<Created<RestModelPrice>, ProblemResult>> Create(
        Caller caller, CreateModelPriceParams body, ModelPriceStore store, CancellationToken ct)
    {
        var price = await store.CreateAsync(caller.MerchantId, new ModelPriceStore.NewPrice(
            body.Model!, body.OwnedBy, body.Input!.Value, body.CachedInput ?? body.Input.Value, body.CacheWrite ?? body.Input.Value,
            body.Output!.Value, body.Characters ?? 0, body.PerMinute ?? 0), ct);
        return TypedResults.Created((string?)null, RestModelPrice.From(price));
    }

    public static async Task<Ok<RestModelList>> Models(Caller caller, ModelPriceStore store, CancellationToken ct)
    {
        var prices = await store.ListCurrentAsync(caller.MerchantId, null, MaxModels, ct);
        return TypedResults.Ok(new RestModelList("list",
            prices.Select(p => new RestModel(p.Model, "model", p.CreatedAt.ToUnixTimeSeconds(), p.OwnedBy)).ToList()));
    }
}
