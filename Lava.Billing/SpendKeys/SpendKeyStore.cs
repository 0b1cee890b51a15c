using Dapper;
using Lava.Billing.Infrastructure;
using Lava.Billing.Ledger;
using Npgsql;

namespace Lava.Billing.SpendKeys;

/// <summary>A spend key with what it has spent (from the ledger) and how many calls it made (from its charges).</summary>
public sealed class SpendKeyRow
{
    public string MerchantId { get; init; } = "";
    public string SpendKeyId { get; init; } = "";
    public string Name { get; set; } = "";
    public string KeyPreview { get; set; } = "";
    public string Status { get; set; } = "";
    public string RequestShape { get; set; } = "";
    public string[]? AllowedModels { get; set; }
    public string[]? AllowedProviders { get; set; }
    public decimal? SpendLimitAmount { get; set; }
    public string? SpendLimitCycle { get; set; }
    public long? RequestLimitCount { get; set; }
    public string? RequestLimitCycle { get; set; }
    public int? RateLimitRpm { get; set; }
    public int? RateLimitBurst { get; set; }
    public DateTime? ExpiresAt { get; set; }
    public DateTime? LastUsedAt { get; init; }
    public DateTime CreatedAt { get; init; }
    public decimal CurrentSpend { get; init; }
    public decimal TotalSpend { get; init; }
    public long CurrentRequests { get; init; }
    public long TotalRequests { get; init; }
}

public sealed class LiveSpendKey
{
    public string MerchantId { get; init; } = "";
    public string RequestShape { get; init; } = "";
    public string[]? AllowedModels { get; init; }
    public string[]? AllowedProviders { get; init; }
}

/// <summary>The limits a caller sets on a key, as they will be stored.</summary>
public sealed record SpendKeySettings(
    string Name, string Status, string RequestShape, string[]? AllowedModels, string[]? AllowedProviders,
    decimal? SpendLimitAmount, string? SpendLimitCycle, long? RequestLimitCount, string? RequestLimitCycle,
    int? RateLimitRpm, int? RateLimitBurst, DateTime? ExpiresAt)
{
    public static SpendKeySettings Of(SpendKeyRow r) => new(r.Name, r.Status, r.RequestShape, r.AllowedModels, r.AllowedProviders,
        r.SpendLimitAmount, r.SpendLimitCycle, r.RequestLimitCount, r.RequestLimitCycle, r.RateLimitRpm, r.RateLimitBurst, r.ExpiresAt);
}

public sealed class SpendKeyStore(NpgsqlDataSource db, TimeProvider clock)
{
    // Spend is read from the ledger (the key's own account, docs/spend-keys.md); requests are the calls not released,
    // counted from the charges. Both for the cycle of the key's own limit (all time without one), read afresh each time.
    private const string Columns = """
        k.merchant_id, k.spend_key_id, k.name, k.key_preview, k.status, k.request_shape, k.allowed_models, k.allowed_providers,
        k.spend_limit_amount, k.spend_limit_cycle, k.request_limit_count, k.request_limit_cycle, k.rate_limit_rpm,
        k.rate_limit_burst, k.expires_at, k.last_used_at, k.created_at,
        spend_key_spent(k.merchant_id, k.spend_key_id, spend_cycle_start(coalesce(k.spend_limit_cycle, 'total'), @Now)) AS current_spend,
        spend_key_spent(k.merchant_id, k.spend_key_id, '-infinity')                                                     AS total_spend,
        u.current_requests, u.total_requests
        """;

    private const string Usage = """
        CROSS JOIN LATERAL (
            SELECT count(*) FILTER (WHERE c.created_at >= spend_cycle_start(coalesce(k.request_limit_cycle, 'total'), @Now)) AS current_requests,
                   count(*)                                                                                                AS total_requests
              FROM spend_key_charges c
             WHERE c.merchant_id = k.merchant_id
               AND c.spend_key_id = k.spend_key_id
               AND c.status <> 'released'
        ) u
        """;

    private const string Insert = """
        INSERT INTO spend_keys (merchant_id, spend_key_id, name, key_hash, key_preview, status, request_shape, allowed_models,
                                allowed_providers, spend_limit_amount, spend_limit_cycle, request_limit_count, request_limit_cycle,
                                rate_limit_rpm, rate_limit_burst, expires_at, created_at)
        VALUES (@MerchantId, @SpendKeyId, @Name, @Hash, @Preview, @Status, @RequestShape, @AllowedModels,
                @AllowedProviders, @SpendLimitAmount, @SpendLimitCycle, @RequestLimitCount, @RequestLimitCycle,
                @RateLimitRpm, @RateLimitBurst, @ExpiresAt, @Now)
        """;

    public async Task<(SpendKeyRow Row, string Key)> CreateAsync(string merchantId, SpendKeySettings s, CancellationToken ct)
    {
        var key = SpendKeySecrets.Generate();
        var id = Ids.New("sk");
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        await connection.ExecuteAsync(new CommandDefinition(Insert, new
        {
            MerchantId = merchantId, SpendKeyId = id, s.Name, Hash = SpendKeySecrets.Hash(key), Preview = SpendKeySecrets.Preview(key),
            s.Status, s.RequestShape, s.AllowedModels, s.AllowedProviders, s.SpendLimitAmount, s.SpendLimitCycle, s.RequestLimitCount,
            s.RequestLimitCycle, s.RateLimitRpm, s.RateLimitBurst, s.ExpiresAt, Now = clock.GetUtcNow(),
        }, tx, cancellationToken: ct));
        // The key's ledger account is born with it, so its first call always has an account to post to.
        await LedgerAccounts.CreateSpendKeyAccountAsync(connection, tx, merchantId, id, ct);
        var row = (await GetAsync(connection, tx, merchantId, id, ct))!;
        await tx.CommitAsync(ct);
        return (row, key);
    }

    private const string SelectOne = $"""
        SELECT {Columns}
          FROM spend_keys k
        {Usage}
         WHERE k.merchant_id = @MerchantId
           AND k.spend_key_id = @SpendKeyId
           AND k.revoked_at IS NULL
        """;

    private async Task<SpendKeyRow?> GetAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, string merchantId, string spendKeyId, CancellationToken ct) =>
        await connection.QuerySingleOrDefaultAsync<SpendKeyRow>(new CommandDefinition(SelectOne,
            new { MerchantId = merchantId, SpendKeyId = spendKeyId, Now = clock.GetUtcNow() }, tx, cancellationToken: ct));

    public async Task<SpendKeyRow?> GetAsync(string merchantId, string spendKeyId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await GetAsync(connection, null, merchantId, spendKeyId, ct);
    }

    private const string SelectPage = $"""
        SELECT {Columns}
          FROM spend_keys k
        {Usage}
         WHERE k.merchant_id = @MerchantId
           AND k.revoked_at IS NULL
           AND k.spend_key_id > @After
         ORDER BY k.spend_key_id
         LIMIT @Take
        """;

    public async Task<List<SpendKeyRow>> ListAsync(string merchantId, string? after, int take, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var rows = await connection.QueryAsync<SpendKeyRow>(new CommandDefinition(SelectPage,
            new { MerchantId = merchantId, After = after ?? "", Take = take, Now = clock.GetUtcNow() }, cancellationToken: ct));
        return rows.AsList();
    }

    private const string Lock = """
        SELECT 1 FROM spend_keys
         WHERE merchant_id = @MerchantId AND spend_key_id = @SpendKeyId AND revoked_at IS NULL
           FOR UPDATE
        """;

    private const string Update = """
        UPDATE spend_keys
           SET name = @Name, status = @Status, request_shape = @RequestShape, allowed_models = @AllowedModels,
               allowed_providers = @AllowedProviders, spend_limit_amount = @SpendLimitAmount, spend_limit_cycle = @SpendLimitCycle,
               request_limit_count = @RequestLimitCount, request_limit_cycle = @RequestLimitCycle, rate_limit_rpm = @RateLimitRpm,
               rate_limit_burst = @RateLimitBurst, expires_at = @ExpiresAt,
               -- a new rate limit starts with a full bucket
               rate_tokens = CASE WHEN rate_limit_rpm IS NOT DISTINCT FROM @RateLimitRpm
                                   AND rate_limit_burst IS NOT DISTINCT FROM @RateLimitBurst THEN rate_tokens END,
               rate_refilled_at = CASE WHEN rate_limit_rpm IS NOT DISTINCT FROM @RateLimitRpm
                                        AND rate_limit_burst IS NOT DISTINCT FROM @RateLimitBurst THEN rate_refilled_at END
         WHERE merchant_id = @MerchantId AND spend_key_id = @SpendKeyId
        """;

    /// <summary>Applies <paramref name="change"/> to the key as it is under a row lock, so two updates never lose one another's fields.</summary>
    public async Task<SpendKeyRow?> UpdateAsync(string merchantId, string spendKeyId, Func<SpendKeySettings, SpendKeySettings> change, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var args = new { MerchantId = merchantId, SpendKeyId = spendKeyId };
        if (await connection.ExecuteScalarAsync<int?>(new CommandDefinition(Lock, args, tx, cancellationToken: ct)) is null) return null;
        var current = (await GetAsync(connection, tx, merchantId, spendKeyId, ct))!;
        var s = change(SpendKeySettings.Of(current));
        await connection.ExecuteAsync(new CommandDefinition(Update, new
        {
            MerchantId = merchantId, SpendKeyId = spendKeyId, s.Name, s.Status, s.RequestShape, s.AllowedModels, s.AllowedProviders,
            s.SpendLimitAmount, s.SpendLimitCycle, s.RequestLimitCount, s.RequestLimitCycle, s.RateLimitRpm, s.RateLimitBurst, s.ExpiresAt,
        }, tx, cancellationToken: ct));
        var updated = await GetAsync(connection, tx, merchantId, spendKeyId, ct);
        await tx.CommitAsync(ct);
        return updated;
    }

    private const string Rotate = """
        UPDATE spend_keys
           SET key_hash = @Hash, key_preview = @Preview
         WHERE merchant_id = @MerchantId AND spend_key_id = @SpendKeyId AND revoked_at IS NULL
        """;

    /// <summary>A new key for the same row: limits, charges and history stay; the old key stops working at once.</summary>
    public async Task<(SpendKeyRow Row, string Key)?> RotateAsync(string merchantId, string spendKeyId, CancellationToken ct)
    {
        var key = SpendKeySecrets.Generate();
        await using var connection = await db.OpenConnectionAsync(ct);
        var changed = await connection.ExecuteAsync(new CommandDefinition(Rotate, new
        {
            MerchantId = merchantId, SpendKeyId = spendKeyId, Hash = SpendKeySecrets.Hash(key), Preview = SpendKeySecrets.Preview(key),
        }, cancellationToken: ct));
        if (changed == 0) return null;
        return ((await GetAsync(connection, null, merchantId, spendKeyId, ct))!, key);
    }

    private const string Revoke = """
        UPDATE spend_keys SET revoked_at = @Now
         WHERE merchant_id = @MerchantId AND spend_key_id = @SpendKeyId AND revoked_at IS NULL
        """;

    public async Task<bool> RevokeAsync(string merchantId, string spendKeyId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.ExecuteAsync(new CommandDefinition(Revoke,
            new { MerchantId = merchantId, SpendKeyId = spendKeyId, Now = clock.GetUtcNow() }, cancellationToken: ct)) == 1;
    }

    private const string SelectLive = """
        SELECT merchant_id, request_shape, allowed_models, allowed_providers
          FROM spend_keys
         WHERE key_hash = @Hash
           AND revoked_at IS NULL
        """;

    /// <summary>The merchant, request shape and allow-lists of a live key, by its hash; its limits are checked later, locked.</summary>
    public async Task<LiveSpendKey?> FindLiveAsync(string key, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.QuerySingleOrDefaultAsync<LiveSpendKey>(new CommandDefinition(SelectLive,
            new { Hash = SpendKeySecrets.Hash(key) }, cancellationToken: ct));
    }
}
