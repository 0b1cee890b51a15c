using System.Text.RegularExpressions;
using Dapper;
using Npgsql;

namespace Lava.Billing.Forward;

/// <summary>Model prices: a merchant's own rows win over the defaults (merchant_id ''), the latest version counts.</summary>
public sealed partial class ModelPriceStore(NpgsqlDataSource db)
{
    private sealed record Row(
        string MerchantId, string Model, int Version, string OwnedBy, decimal InputPer1m, decimal CachedInputPer1m,
        decimal CacheWritePer1m, decimal OutputPer1m, decimal CharactersPer1m, decimal PerMinute, DateTime CreatedAt)
    {
        public ModelPrice ToPrice() => new(Model, Version, OwnedBy, InputPer1m, CachedInputPer1m, CacheWritePer1m, OutputPer1m,
            CharactersPer1m, PerMinute, MerchantId.Length > 0, new DateTimeOffset(CreatedAt, TimeSpan.Zero));
    }

    private const string Columns = """
        merchant_id, model, version, owned_by, input_per_1m, cached_input_per_1m, cache_write_per_1m, output_per_1m,
        characters_per_1m, per_minute, created_at
        """;

    // Current price per model: the merchant's newest version, else the default's newest.
    private const string Effective = $"""
        SELECT DISTINCT ON (model) {Columns}
          FROM model_prices
         WHERE merchant_id IN (@MerchantId, '')
         ORDER BY model, (merchant_id = @MerchantId) DESC, version DESC
        """;

    private const string SelectForModels = $"""
        SELECT * FROM ({Effective}) p
         WHERE model = ANY(@Models)
         ORDER BY array_position(@Models, model)
         LIMIT 1
        """;

    /// <summary>
    /// The price a call to <paramref name="model"/> is costed with. A dated snapshot (<c>gpt-4o-2024-08-06</c>,
    /// <c>claude-sonnet-4-5-20250929</c>) falls back to its undated alias when it has no price of its own.
    /// </summary>
    public async Task<ModelPrice?> FindCurrentAsync(string merchantId, string model, CancellationToken ct)
    {
        var models = Candidates(model);
        await using var connection = await db.OpenConnectionAsync(ct);
        var row = await connection.QuerySingleOrDefaultAsync<Row>(new CommandDefinition(SelectForModels,
            new { MerchantId = merchantId, Models = models }, cancellationToken: ct));
        return row?.ToPrice();
    }

    /// <summary>The models whose prices <paramref name="model"/> is costed with, in order: itself, then its undated alias.</summary>
    public static string[] Candidates(string model)
    {
        var alias = DateSuffix().Replace(model, "");
        return alias == model ? [model] : [model, alias];
    }

    private const string SelectPage = $"""
        SELECT * FROM ({Effective}) p
         WHERE model > @After
         ORDER BY model
         LIMIT @Take
        """;

    public async Task<List<ModelPrice>> ListCurrentAsync(string merchantId, string? after, int take, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var rows = await connection.QueryAsync<Row>(new CommandDefinition(SelectPage,
            new { MerchantId = merchantId, After = after ?? "", Take = take }, cancellationToken: ct));
        return rows.Select(r => r.ToPrice()).ToList();
    }

    public sealed record NewPrice(string Model, string? OwnedBy, decimal Input, decimal CachedInput, decimal CacheWrite,
        decimal Output, decimal Characters, decimal PerMinute);

    // The next version of the merchant's own series. Without a merchant row yet, owned_by defaults to the default's.
    // Two concurrent creates race for one version: the loser inserts nothing and tries again.
    private const string Insert = $"""
        INSERT INTO model_prices (merchant_id, model, version, owned_by, input_per_1m, cached_input_per_1m, cache_write_per_1m,
                                  output_per_1m, characters_per_1m, per_minute)
        SELECT @MerchantId, @Model,
               coalesce((SELECT max(version) FROM model_prices WHERE merchant_id = @MerchantId AND model = @Model), 0) + 1,
               coalesce(@OwnedBy,
                        (SELECT owned_by FROM model_prices WHERE merchant_id IN (@MerchantId, '') AND model = @Model
                          ORDER BY (merchant_id = @MerchantId) DESC, version DESC LIMIT 1),
                        'custom'),
               @Input, @CachedInput, @CacheWrite, @Output, @Characters, @PerMinute
        ON CONFLICT (merchant_id, model, version) DO NOTHING
        RETURNING {Columns}
        """;

    public async Task<ModelPrice> CreateAsync(string merchantId, NewPrice price, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        for (var attempt = 1; ; attempt++)
        {
            var row = await connection.QuerySingleOrDefaultAsync<Row>(new CommandDefinition(Insert, new
            {
                MerchantId = merchantId, price.Model, price.OwnedBy, price.Input, price.CachedInput, price.CacheWrite,
                price.Output, price.Characters, price.PerMinute,
            }, cancellationToken: ct));
            if (row is not null) return row.ToPrice();
            if (attempt == 5) throw new InvalidOperationException($"model price {price.Model}: lost the version race {attempt} times");
        }
    }

    [GeneratedRegex(@"-(\d{4}-\d{2}-\d{2}|\d{8})\z")]
    private static partial Regex DateSuffix();
}
