using Dapper;
using Lava.Billing.Infrastructure;
using Npgsql;

namespace Lava.Billing.SpendKeys;

/// <summary>A call allowed to go ahead: its charge holds the worst case until it is captured or released.</summary>
public sealed record SpendKeyGrant(string MerchantId, string SpendKeyId, string ChargeId, decimal HeldAmount);

/// <summary>
/// The limits of a spend key, enforced in the database: one transaction locks the key's row, reads its usage in the
/// current cycles from its charges, refills and draws its token bucket, and inserts a held charge for the call's worst
/// case. Concurrent calls on one key (from any instance) queue on that lock, so each sees the holds of those before it
/// and no race lets more calls through than the limits allow.
/// </summary>
public sealed class SpendKeyLimits(NpgsqlDataSource db, TimeProvider clock)
{
    // The usage is read by a second statement on purpose: under READ COMMITTED a statement that waited for the row
    // lock still reads with the snapshot it took before waiting, so subqueries in the locking SELECT would miss the
    // charges committed by the transaction it waited for. The next statement's snapshot sees them.
    private const string LockKey = """
        SELECT k.merchant_id, k.spend_key_id
          FROM spend_keys k
         WHERE k.key_hash = @Hash
           AND k.revoked_at IS NULL
           FOR UPDATE
        """;

    private const string ReadLocked = """
        SELECT k.merchant_id, k.spend_key_id, k.status, k.request_shape, k.allowed_models, k.allowed_providers,
               k.spend_limit_amount, k.request_limit_count, k.rate_limit_rpm, k.rate_limit_burst, k.rate_tokens,
               k.rate_refilled_at, k.expires_at,
               spend_cycle_end(coalesce(k.spend_limit_cycle, 'total'), @Now)   AS spend_cycle_end,
               spend_cycle_end(coalesce(k.request_limit_cycle, 'total'), @Now) AS request_cycle_end,
               (SELECT coalesce(sum(coalesce(c.amount, c.held_amount)), 0)
                  FROM spend_key_charges c
                 WHERE c.merchant_id = k.merchant_id AND c.spend_key_id = k.spend_key_id AND c.status <> 'released'
                   AND c.created_at >= spend_cycle_start(coalesce(k.spend_limit_cycle, 'total'), @Now))   AS spend_in_cycle,
               (SELECT count(*)
                  FROM spend_key_charges c
                 WHERE c.merchant_id = k.merchant_id AND c.spend_key_id = k.spend_key_id AND c.status <> 'released'
                   AND c.created_at >= spend_cycle_start(coalesce(k.request_limit_cycle, 'total'), @Now)) AS requests_in_cycle
          FROM spend_keys k
         WHERE k.merchant_id = @MerchantId
           AND k.spend_key_id = @SpendKeyId
        """;

    private const string Draw = """
        UPDATE spend_keys
           SET rate_tokens = @Tokens, rate_refilled_at = @Now, last_used_at = @Now
         WHERE merchant_id = @MerchantId AND spend_key_id = @SpendKeyId
        """;

    private const string Hold = """
        INSERT INTO spend_key_charges (merchant_id, charge_id, spend_key_id, status, held_amount, model, created_at)
        VALUES (@MerchantId, @ChargeId, @SpendKeyId, 'held', @HeldAmount, @Model, @Now)
        """;

    public async Task<(SpendKeyGrant? Grant, SpendKeyRefusal? Refusal, TimeSpan? RetryAfter)> ReserveAsync(
        string key, string model, string provider, decimal worstCase, CancellationToken ct)
    {
        if (!SpendKeySecrets.LooksLikeOne(key)) return (null, SpendKeyRefusal.UnknownKey, null);
        var now = clock.GetUtcNow().UtcDateTime;
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var locked = await connection.QuerySingleOrDefaultAsync<(string MerchantId, string SpendKeyId)?>(new CommandDefinition(LockKey,
            new { Hash = SpendKeySecrets.Hash(key) }, tx, cancellationToken: ct));
        if (locked is not { } id) return (null, SpendKeyRefusal.UnknownKey, null);
        var k = await connection.QuerySingleAsync<LockedSpendKey>(new CommandDefinition(ReadLocked,
            new { id.MerchantId, id.SpendKeyId, Now = now }, tx, cancellationToken: ct));
        var (refusal, retryAfter) = SpendKeyPolicy.Decide(k, model, provider, worstCase, now);
        if (refusal is not null) return (null, refusal, retryAfter);
        decimal? tokens = k.RateLimitRpm is null ? null : SpendKeyPolicy.Tokens(k, now) - 1;
        await connection.ExecuteAsync(new CommandDefinition(Draw,
            new { Tokens = tokens, Now = now, k.MerchantId, k.SpendKeyId }, tx, cancellationToken: ct));
        var chargeId = Ids.New("skc");
        await connection.ExecuteAsync(new CommandDefinition(Hold,
            new { k.MerchantId, ChargeId = chargeId, k.SpendKeyId, HeldAmount = worstCase, Model = model, Now = now }, tx, cancellationToken: ct));
        await tx.CommitAsync(ct);
        return (new SpendKeyGrant(k.MerchantId, k.SpendKeyId, chargeId, worstCase), null, null);
    }

    private const string Capture = """
        UPDATE spend_key_charges
           SET status = 'captured', amount = @Amount, settled_at = @Now
         WHERE merchant_id = @MerchantId AND charge_id = @ChargeId AND status = 'held'
        """;

    /// <summary>The call's real cost replaces its hold. False when the charge was already settled.</summary>
    public async Task<bool> CaptureAsync(SpendKeyGrant grant, decimal amount, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.ExecuteAsync(new CommandDefinition(Capture,
            new { grant.MerchantId, grant.ChargeId, Amount = amount, Now = clock.GetUtcNow().UtcDateTime }, cancellationToken: ct)) == 1;
    }

    private const string Release = """
        UPDATE spend_key_charges
           SET status = 'released', settled_at = @Now
         WHERE merchant_id = @MerchantId AND charge_id = @ChargeId AND status = 'held'
        """;

    /// <summary>A call that failed costs nothing and does not count against the request limit.</summary>
    public async Task<bool> ReleaseAsync(SpendKeyGrant grant, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.ExecuteAsync(new CommandDefinition(Release,
            new { grant.MerchantId, grant.ChargeId, Now = clock.GetUtcNow().UtcDateTime }, cancellationToken: ct)) == 1;
    }
}
