using System.Data;
using System.Text.Json;
using Dapper;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Resilience;
using Lava.Billing.Ledger;
using Npgsql;

namespace Lava.Billing.SpendKeys;

/// <summary>
/// A call about to be let through: its worst case (held against the spend limit), the cost of the prompt alone (what
/// the crash rule bills until the stream shows more) and how long it may run without a progress note before the settle
/// worker takes its process for dead.
/// </summary>
public sealed record SpendKeyCall(string Model, string Provider, decimal WorstCase, decimal Estimate, TimeSpan Lease);

/// <summary>A call allowed to go ahead: its charge holds the worst case until it is captured or released.</summary>
public sealed record SpendKeyGrant(string MerchantId, string SpendKeyId, string ChargeId, decimal HeldAmount, TimeSpan Lease);

/// <summary>
/// The limits of a spend key, enforced in the database: one transaction locks the key's row, reads its spend in the
/// current cycle (the ledger's, plus the holds of calls still running) and its requests, refills and draws its token
/// bucket, and inserts a held charge for the call's worst case. Concurrent calls on one key (from any instance) queue on
/// that lock, so each sees the holds of those before it and no race lets more calls through than the limits allow.
/// A capture posts the call's cost to the ledger in the same transaction that closes the hold (docs/spend-keys.md).
/// </summary>
public sealed class SpendKeyLimits(NpgsqlDataSource db, TimeProvider clock, IConfiguration configuration, ILogger<SpendKeyLimits> log)
{
    /// <summary>
    /// Ends of calls kept in memory, in all, while the database cannot take them. Past it, or past a merchant's share,
    /// new calls are refused before the provider (<see cref="HasRoomFor"/>); an end already due is always kept.
    /// </summary>
    public const int MaxUnwritten = 100_000;

    /// <summary>One merchant's share of <see cref="MaxUnwritten"/> (<c>SpendKeys:MaxUnwrittenPerMerchant</c>, a tenth by default).</summary>
    private readonly int _share = Math.Clamp(configuration.GetValue("SpendKeys:MaxUnwrittenPerMerchant", MaxUnwritten / 10), 1, MaxUnwritten);

    private sealed record UnwrittenEnd(SpendKeyGrant Grant, decimal? Amount, bool Estimated, string? Anomaly);

    // One queue per merchant, so one merchant's backlog neither takes the others' room nor stops their ends being
    // written. Guarded by the lock, with the charges they hold (kept from the crash rule) and their total.
    private readonly Lock _unwrittenLock = new();
    private readonly Dictionary<string, Queue<UnwrittenEnd>> _unwritten = new(StringComparer.Ordinal);
    private readonly HashSet<string> _unwrittenCharges = new(StringComparer.Ordinal);
    private int _unwrittenCount;
    // One writer at a time: two would write the same head and then each take one off, losing the second.
    private readonly SemaphoreSlim _writing = new(1, 1);

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
               spend_key_spent(k.merchant_id, k.spend_key_id, spend_cycle_start(coalesce(k.spend_limit_cycle, 'total'), @Now))
               + (SELECT coalesce(sum(c.held_amount), 0)
                    FROM spend_key_charges c
                   WHERE c.merchant_id = k.merchant_id AND c.spend_key_id = k.spend_key_id AND c.status = 'held'
                     AND c.created_at >= spend_cycle_start(coalesce(k.spend_limit_cycle, 'total'), @Now)) AS spend_in_cycle,
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
        INSERT INTO spend_key_charges (merchant_id, charge_id, spend_key_id, status, held_amount, usage_amount, due_at, model, created_at)
        VALUES (@MerchantId, @ChargeId, @SpendKeyId, 'held', @HeldAmount, @Estimate, @Due, @Model, @Now)
        """;

    public async Task<(SpendKeyGrant? Grant, SpendKeyRefusal? Refusal, TimeSpan? RetryAfter)> ReserveAsync(
        string key, SpendKeyCall call, CancellationToken ct)
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
        var (refusal, retryAfter) = SpendKeyPolicy.Decide(k, call.Model, call.Provider, call.WorstCase, now);
        if (refusal is not null) return (null, refusal, retryAfter);
        decimal? tokens = k.RateLimitRpm is null ? null : SpendKeyPolicy.Tokens(k, now) - 1;
        await connection.ExecuteAsync(new CommandDefinition(Draw,
            new { Tokens = tokens, Now = now, k.MerchantId, k.SpendKeyId }, tx, cancellationToken: ct));
        var chargeId = Ids.New("skc");
        // The held charge is the call's durable record: written before the provider is called, settled by the crash
        // rule if nothing captures or releases it before its deadline.
        await connection.ExecuteAsync(new CommandDefinition(Hold, new
        {
            k.MerchantId, ChargeId = chargeId, k.SpendKeyId, HeldAmount = call.WorstCase, Estimate = Math.Min(call.Estimate, call.WorstCase),
            Due = now + call.Lease, call.Model, Now = now,
        }, tx, cancellationToken: ct));
        // Not cancelled: a commit cut off by a client that left may still have committed, leaving a held charge its caller
        // never learns of (the crash rule would bill its prompt for a call never sent). Committed and returned, the
        // relay sees the cancellation and releases the charge.
        await tx.CommitAsync(CancellationToken.None);
        return (new SpendKeyGrant(k.MerchantId, k.SpendKeyId, chargeId, call.WorstCase, call.Lease), null, null);
    }

    private const string UpdateProgress = """
        UPDATE spend_key_charges
           SET usage_amount = @Amount, due_at = @Due
         WHERE merchant_id = @MerchantId AND charge_id = @ChargeId AND status = 'held'
        """;

    /// <summary>
    /// While an answer streams: the cost of the usage seen so far, and a later deadline, telling the settle worker the
    /// call is alive. False when the charge was settled meanwhile.
    /// </summary>
    public async Task<bool> ProgressAsync(SpendKeyGrant grant, decimal amount, CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.ExecuteAsync(new CommandDefinition(UpdateProgress, new
        {
            grant.MerchantId, grant.ChargeId, Amount = Math.Clamp(amount, 0, Money.Max), Due = now + grant.Lease,
        }, cancellationToken: ct)) == 1;
    }

    private const string Capture = """
        UPDATE spend_key_charges
           SET status = 'captured', amount = @Amount, estimated = @Estimated, anomaly = @Anomaly, settled_at = @Now, due_at = NULL
         WHERE merchant_id = @MerchantId AND charge_id = @ChargeId AND status = 'held'
        RETURNING merchant_id, charge_id, spend_key_id, model, amount, estimated, anomaly, created_at
        """;

    /// <summary>
    /// The call's real cost replaces its hold, and is posted to the ledger in the same transaction. False when the
    /// charge was already settled (released, or captured by the crash rule). <paramref name="anomaly"/>: why the amount
    /// is not the provider's own count, when finance should know (a count out of range).
    /// </summary>
    public async Task<bool> CaptureAsync(SpendKeyGrant grant, decimal amount, bool estimated, CancellationToken ct, string? anomaly = null)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var captured = await connection.QuerySingleOrDefaultAsync<CapturedCharge>(new CommandDefinition(Capture, new
        {
            grant.MerchantId, grant.ChargeId, Amount = Math.Clamp(amount, 0, Money.Max), Estimated = estimated, Anomaly = anomaly,
            Now = clock.GetUtcNow().UtcDateTime,
        }, tx, cancellationToken: ct));
        if (captured is null) return false;
        await PostAsync(connection, tx, captured, ct);
        await tx.CommitAsync(ct);
        return true;
    }

    private const string Release = """
        UPDATE spend_key_charges
           SET status = 'released', settled_at = @Now, due_at = NULL
         WHERE merchant_id = @MerchantId AND charge_id = @ChargeId AND status = 'held'
        """;

    /// <summary>A call that failed costs nothing and does not count against the request limit.</summary>
    public async Task<bool> ReleaseAsync(SpendKeyGrant grant, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.ExecuteAsync(new CommandDefinition(Release,
            new { grant.MerchantId, grant.ChargeId, Now = clock.GetUtcNow().UtcDateTime }, cancellationToken: ct)) == 1;
    }

    /// <summary>
    /// The end of a call: captured at <paramref name="amount"/> (and posted), or released when it is null. When the
    /// database cannot take it now, it is kept in memory, whatever the backlog (the answer is already out), and written
    /// by the settle worker before it looks for crashed calls, so a call whose release could not be written is released,
    /// not billed by the crash rule (docs/spend-keys.md).
    /// </summary>
    public async Task EndAsync(SpendKeyGrant grant, decimal? amount, bool estimated, string? anomaly = null)
    {
        var end = new UnwrittenEnd(grant, amount, estimated, anomaly);
        try
        {
            await WriteEndAsync(end, CancellationToken.None);
        }
        catch (Exception e)
        {
            log.LogWarning("Spend key charge {ChargeId} of merchant {MerchantId} could not be settled now ({Failure}); the settle worker will write it",
                grant.ChargeId, grant.MerchantId, e.GetType().Name);
            lock (_unwrittenLock)
            {
                if (!_unwritten.TryGetValue(grant.MerchantId, out var queue)) _unwritten[grant.MerchantId] = queue = new Queue<UnwrittenEnd>();
                queue.Enqueue(end);
                _unwrittenCharges.Add(grant.ChargeId);
                _unwrittenCount++;
            }
        }
    }

    /// <summary>
    /// False when a new call of this merchant must wait: its share of the ends kept in memory is full, or all of them
    /// are. Checked before the hold, so a refused call costs nothing; calls already running may still add theirs.
    /// </summary>
    public bool HasRoomFor(string merchantId)
    {
        lock (_unwrittenLock)
            return _unwrittenCount < MaxUnwritten && (!_unwritten.TryGetValue(merchantId, out var queue) || queue.Count < _share);
    }

    private Task<bool> WriteEndAsync(UnwrittenEnd end, CancellationToken ct) =>
        end.Amount is { } a ? CaptureAsync(end.Grant, a, end.Estimated, ct, end.Anomaly) : ReleaseAsync(end.Grant, ct);

    /// <summary>
    /// Writes the ends kept in memory, each merchant's oldest first. A merchant whose end fails for a reason of its own
    /// (any error that is not an outage: a refusal, a lock it could not get, a bug) waits for the next round while the
    /// others go on; an outage of the database (<see cref="OutageLog.IsOutage"/>) stops the round and is thrown.
    /// </summary>
    public async Task WriteUnwrittenAsync(CancellationToken ct)
    {
        await _writing.WaitAsync(ct);
        try
        {
            string[] merchants;
            lock (_unwrittenLock) merchants = [.. _unwritten.Keys];
            foreach (var merchantId in merchants)
            {
                while (NextUnwritten(merchantId) is { } end)
                {
                    try
                    {
                        await WriteEndAsync(end, ct);
                    }
                    catch (Exception e) when (OutageLog.IsItemFailure(e, ct))
                    {
                        // This merchant's failure, whatever its type: the other merchants' ends, and the crash rule's round
                        // after them, go on. The database being away ends the round for everyone.
                        log.LogWarning("Spend key charges of merchant {MerchantId} still cannot be settled ({Failure}); {Count} wait for the next round",
                            merchantId, e is PostgresException pg ? pg.SqlState : e.GetType().Name, UnwrittenOf(merchantId));
                        break;
                    }
                    lock (_unwrittenLock)
                    {
                        var queue = _unwritten[merchantId];
                        queue.Dequeue();
                        _unwrittenCharges.Remove(end.Grant.ChargeId);
                        _unwrittenCount--;
                        if (queue.Count == 0) _unwritten.Remove(merchantId);
                    }
                }
            }
        }
        finally
        {
            _writing.Release();
        }
    }

    private UnwrittenEnd? NextUnwritten(string merchantId)
    {
        lock (_unwrittenLock)
            return _unwritten.TryGetValue(merchantId, out var queue) ? queue.Peek() : null;
    }

    /// <summary>How many ends of this merchant are kept in memory, waiting for the database.</summary>
    public int UnwrittenOf(string merchantId)
    {
        lock (_unwrittenLock)
            return _unwritten.TryGetValue(merchantId, out var queue) ? queue.Count : 0;
    }

    public const string Recovered = "recovered_after_crash";

    // Held charges past their deadline, across merchants: each is then settled in its own merchant's transaction. The
    // calls whose end this instance keeps in memory are not crashed: their end is written when the database takes it.
    private const string SelectDue = """
        SELECT merchant_id, charge_id
          FROM spend_key_charges
         WHERE status = 'held' AND due_at <= @Now
           AND NOT (charge_id = ANY(@Unwritten))
         ORDER BY due_at
         LIMIT @Limit
        """;

    // The deadline is checked again under the row lock: a progress note that moved it on since wins, and so does a
    // capture or release by the call itself (status).
    private const string CaptureCrashed = """
        UPDATE spend_key_charges
           SET status = 'captured', amount = usage_amount, estimated = true, anomaly = @Anomaly, settled_at = @Now, due_at = NULL
         WHERE merchant_id = @MerchantId AND charge_id = @ChargeId AND status = 'held' AND due_at <= @Now
        RETURNING merchant_id, charge_id, spend_key_id, model, amount, estimated, anomaly, created_at
        """;

    /// <summary>
    /// The crash rule (docs/spend-keys.md): a held charge past its deadline belongs to a call whose process died; it is
    /// captured at its last known cost, flagged estimated, and posted like any other call. Returns how many were settled.
    /// </summary>
    public async Task<int> SettleCrashedAsync(int limit, CancellationToken ct)
    {
        var now = clock.GetUtcNow().UtcDateTime;
        await using var connection = await db.OpenConnectionAsync(ct);
        string[] unwritten;
        lock (_unwrittenLock) unwritten = [.. _unwrittenCharges];
        var due = (await connection.QueryAsync<(string MerchantId, string ChargeId)>(new CommandDefinition(SelectDue,
            new { Now = now, Limit = limit, Unwritten = unwritten }, cancellationToken: ct))).AsList();
        var settled = 0;
        foreach (var (merchantId, chargeId) in due)
        {
            try
            {
                await using var tx = await connection.BeginTransactionAsync(ct);
                var captured = await connection.QuerySingleOrDefaultAsync<CapturedCharge>(new CommandDefinition(CaptureCrashed,
                    new { MerchantId = merchantId, ChargeId = chargeId, Anomaly = Recovered, Now = now }, tx, cancellationToken: ct));
                // Null when the call itself (or another instance) settled it meanwhile.
                if (captured is not null) await PostAsync(connection, tx, captured, ct);
                await tx.CommitAsync(ct);
                if (captured is not null) settled++;
            }
            catch (Exception e) when (e is not OperationCanceledException && e is not NpgsqlException { IsTransient: true }
                                      && connection.State == ConnectionState.Open)
            {
                // This charge's own failure (its rows refuse it, whatever the exception): it stays held and is tried again
                // next round, while the other merchants' charges are settled now. A database that is away ends the round.
                log.LogWarning("Spend key charge {ChargeId} of merchant {MerchantId} cut by a crash could not be settled ({Failure}); trying again next round",
                    chargeId, merchantId, e is PostgresException p ? p.SqlState : e.GetType().Name);
            }
        }
        return settled;
    }

    private sealed record CapturedCharge(string MerchantId, string ChargeId, string SpendKeyId, string? Model, decimal Amount,
        bool Estimated, string? Anomaly, DateTime CreatedAt);

    /// <summary>
    /// One ledger transaction per captured call (docs/ledger.md): Dr the key's own account, Cr provider payable, dated
    /// when the call was let through, so it counts in the cycle that held it; its reference is the charge, so it is posted once.
    /// </summary>
    private Task PostAsync(NpgsqlConnection connection, NpgsqlTransaction tx, CapturedCharge c, CancellationToken ct)
    {
        var at = new DateTimeOffset(DateTime.SpecifyKind(c.CreatedAt, DateTimeKind.Utc));
        var now = clock.GetUtcNow();
        var lineage = JsonSerializer.Serialize(new Dictionary<string, object?>
        {
            ["spend_key_id"] = c.SpendKeyId, ["charge_id"] = c.ChargeId, ["model"] = c.Model, ["estimated"] = c.Estimated,
            ["anomaly"] = c.Anomaly,
        });
        return LedgerWriter.PostAsync(connection, tx, c.MerchantId, new LedgerWriter.Transaction(Ids.New("txn", now), LedgerKinds.SpendKeyUsage, c.ChargeId,
            null, at, [new(LedgerAccounts.SpendKey(c.SpendKeyId), c.Amount), new(LedgerAccounts.ProviderPayable, -c.Amount)], lineage), ct);
    }
}
