using System.Collections.Concurrent;
using System.Security.Cryptography;
using Dapper;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;
using Npgsql;

namespace Lava.Billing.Merchants;

public sealed record SecretKeyRow(string SecretKeyId, string Name, string SecretKeyHint, string Scope, DateTime CreatedAt);

public sealed class SecretKeyStore(NpgsqlDataSource db, TimeProvider clock)
{
    /// <summary>How long a key found live may answer from memory on the routes that allow it.</summary>
    public static readonly TimeSpan CacheLifetime = TimeSpan.FromSeconds(5);
    private const int CacheLimit = 10_000;

    // By the key's hash (never the secret). Only usage reports and gateway calls read it: reports re-check the key inside
    // the transaction that posts them (ReportPoster), gateway calls in the statements that write their record before the
    // provider is called (ForwardCallStore), so a revoked key never writes; what the cache can still answer for up to
    // CacheLifetime after a revocation made by another instance is a validation error, which reads nothing. RevokeAsync
    // clears this instance's entries at once.
    private readonly ConcurrentDictionary<string, (Caller Caller, DateTimeOffset Until)> _cache = new();
    // The cached routes' lookups in flight, by the key's hash: at most one per key (AuthenticateAsync).
    private readonly ConcurrentDictionary<string, Task<Caller?>> _lookups = new();
    private long _lookupCount;
    // Moved on by Forget: a lookup that started before it leaves no entry behind.
    private long _generation;
    private const string SelectByHash = """
        SELECT merchant_id, secret_key_id, scope, key_hash
          FROM secret_keys
         WHERE key_hash = @Hash
           AND revoked_at IS NULL
        """;

    /// <summary>
    /// The lookup goes by the hash of a 190-bit secret, so its timing says nothing useful about the secret; the final
    /// comparison is constant-time all the same.
    /// </summary>
    public async Task<Caller?> AuthenticateAsync(string secret, CancellationToken ct) => await AuthenticateAsync(secret, cached: false, ct);

    /// <summary>
    /// <paramref name="cached"/>: a key found live less than <see cref="CacheLifetime"/> ago is not looked up again. Only
    /// for routes whose writes re-check the key in their own transaction (see the cache's comment).
    /// </summary>
    public async Task<Caller?> AuthenticateAsync(string secret, bool cached, CancellationToken ct)
    {
        if (!secret.StartsWith("aks_", StringComparison.Ordinal) || secret.Length > 200) return null;
        var hash = SecretKeys.Hash(secret);
        var cacheKey = Convert.ToBase64String(hash);
        if (!cached) return await LookUpAsync(hash, cacheKey, ct);
        if (_cache.TryGetValue(cacheKey, out var hit) && hit.Until > clock.GetUtcNow()) return hit.Caller;
        // One lookup per key at a time. A key's entry runs out for every request in flight at once: each caller looking
        // it up itself took one pooled connection per request for the same row, every CacheLifetime, beside the
        // posting's writers. Callers that find it expired together share the first one's lookup (each still leaves when
        // its own request does); it runs to its end whoever waits, and its failure is each waiter's.
        var mine = new TaskCompletionSource<Caller?>(TaskCreationOptions.RunContinuationsAsynchronously);
        var shared = _lookups.GetOrAdd(cacheKey, mine.Task);
        if (ReferenceEquals(shared, mine.Task)) _ = LookUpSharedAsync(mine, hash, cacheKey);
        return await shared.WaitAsync(ct);
    }

    /// <summary>The lookup others may join: it leaves the lookups in flight before its callers have its answer.</summary>
    private async Task LookUpSharedAsync(TaskCompletionSource<Caller?> lookup, byte[] hash, string cacheKey)
    {
        try
        {
            var caller = await LookUpAsync(hash, cacheKey, CancellationToken.None);
            _lookups.TryRemove(KeyValuePair.Create(cacheKey, lookup.Task));
            lookup.SetResult(caller);
        }
        catch (Exception e)
        {
            _lookups.TryRemove(KeyValuePair.Create(cacheKey, lookup.Task));
            lookup.SetException(e);
            // Each waiter has the failure; one whose waiters all left is not an error of its own.
            _ = lookup.Task.Exception;
        }
    }

    /// <summary>Database lookups made, for tests.</summary>
    internal long LookupCount => Interlocked.Read(ref _lookupCount);

    private async Task<Caller?> LookUpAsync(byte[] hash, string cacheKey, CancellationToken ct)
    {
        Interlocked.Increment(ref _lookupCount);
        var now = clock.GetUtcNow();
        var generation = Interlocked.Read(ref _generation);
        await using var connection = await db.OpenConnectionAsync(ct);
        var row = await connection.QuerySingleOrDefaultAsync<(string MerchantId, string SecretKeyId, string Scope, byte[] KeyHash)?>(
            new CommandDefinition(SelectByHash, new { Hash = hash }, cancellationToken: ct));
        if (row is not { } r || !CryptographicOperations.FixedTimeEquals(r.KeyHash, hash))
        {
            _cache.TryRemove(cacheKey, out _);
            return null;
        }
        var caller = new Caller(r.MerchantId, r.SecretKeyId, r.Scope);
        if (_cache.Count >= CacheLimit) _cache.Clear();
        if (Interlocked.Read(ref _generation) == generation)
        {
            var entry = (caller, now + CacheLifetime);
            _cache[cacheKey] = entry;
            // Forget may have run between the check and the write, before the entry was there to be removed.
            if (Interlocked.Read(ref _generation) != generation) _cache.TryRemove(KeyValuePair.Create(cacheKey, entry));
        }
        return caller;
    }

    private const string Insert = """
        INSERT INTO secret_keys (merchant_id, secret_key_id, name, key_hash, secret_key_hint, scope)
        VALUES (@MerchantId, @SecretKeyId, @Name, @Hash, @Hint, @Scope)
        RETURNING secret_key_id, name, secret_key_hint, scope, created_at
        """;

    public static async Task<(SecretKeyRow Row, string Secret)> CreateAsync(
        NpgsqlConnection connection, NpgsqlTransaction? tx, string merchantId, string name, string scope, CancellationToken ct)
    {
        var secret = SecretKeys.Generate();
        var row = await connection.QuerySingleAsync<SecretKeyRow>(new CommandDefinition(Insert, new
        {
            MerchantId = merchantId, SecretKeyId = Ids.New("key"), Name = name,
            Hash = SecretKeys.Hash(secret), Hint = SecretKeys.Hint(secret), Scope = scope,
        }, tx, cancellationToken: ct));
        return (row, secret);
    }

    public async Task<(SecretKeyRow Row, string Secret)> CreateAsync(string merchantId, string name, string scope, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await CreateAsync(connection, null, merchantId, name, scope, ct);
    }

    private const string SelectPage = """
        SELECT secret_key_id, name, secret_key_hint, scope, created_at
          FROM secret_keys
         WHERE merchant_id = @MerchantId
           AND revoked_at IS NULL
           AND secret_key_id > @After
         ORDER BY secret_key_id
         LIMIT @Take
        """;

    public async Task<List<SecretKeyRow>> ListAsync(string merchantId, string? after, int take, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var rows = await connection.QueryAsync<SecretKeyRow>(new CommandDefinition(SelectPage,
            new { MerchantId = merchantId, After = after ?? "", Take = take }, cancellationToken: ct));
        return rows.AsList();
    }

    // Locks the merchant's live keys so two concurrent revocations cannot both see "another key remains".
    private const string Revoke = """
        WITH live AS (
            SELECT secret_key_id FROM secret_keys
             WHERE merchant_id = @MerchantId AND revoked_at IS NULL
             ORDER BY secret_key_id
               FOR UPDATE
        )
        UPDATE secret_keys k
           SET revoked_at = now()
         WHERE k.merchant_id = @MerchantId
           AND k.secret_key_id = @SecretKeyId
           AND k.revoked_at IS NULL
           AND (SELECT count(*) FROM live) > 1
        RETURNING k.secret_key_id
        """;

    private const string Exists = """
        SELECT EXISTS (SELECT 1 FROM secret_keys WHERE merchant_id = @MerchantId AND secret_key_id = @SecretKeyId AND revoked_at IS NULL)
        """;

    public enum RevokeOutcome { Revoked, NotFound, LastKey }

    /// <summary>The key is no longer live (revoked here, or found revoked by a re-check): it is looked up again next time.</summary>
    public void Forget(string merchantId, string secretKeyId)
    {
        // A lookup in flight may have read the key before it was revoked: later callers do not join it, and it fills no
        // entry when it ends.
        Interlocked.Increment(ref _generation);
        _lookups.Clear();
        foreach (var entry in _cache.Where(e => e.Value.Caller.MerchantId == merchantId && e.Value.Caller.SecretKeyId == secretKeyId))
            _cache.TryRemove(entry.Key, out _);
    }

    public async Task<RevokeOutcome> RevokeAsync(string merchantId, string secretKeyId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var args = new { MerchantId = merchantId, SecretKeyId = secretKeyId };
        var revoked = await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(Revoke, args, cancellationToken: ct));
        if (revoked is not null)
        {
            Forget(merchantId, secretKeyId);
            return RevokeOutcome.Revoked;
        }
        var exists = await connection.ExecuteScalarAsync<bool>(new CommandDefinition(Exists, args, cancellationToken: ct));
        return exists ? RevokeOutcome.LastKey : RevokeOutcome.NotFound;
    }
}
