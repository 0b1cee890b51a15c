using System.Text.Json;
using Dapper;
using Lava.Billing.Credits;
using Lava.Billing.Infrastructure.Http;
using Npgsql;

namespace Lava.Billing.Forward;

/// <summary>What a gateway call carried, kept on its record so its report can be built again by any instance.</summary>
public sealed record ForwardCallDetails(
    string Provider, string ProviderKeyType, string? Model, string Endpoint, string Upstream, int? ModelPriceVersion,
    Dictionary<string, string> Metadata);

/// <summary>
/// The durable record of one gateway call (table <c>forward_calls</c>, docs/gateway.md): who is billed, what was held,
/// and the usage to bill (the best known so far while pending).
/// </summary>
public sealed record ForwardCallRecord(
    string MerchantId, string RequestId, ForwardMode Mode, string? CustomerId, string? MeterSlug, string? HoldId,
    ForwardCallDetails Details, BilledUsage Usage, string? Anomaly, DateTimeOffset? ServedAt, int Attempts);

/// <summary>The rows of <c>forward_calls</c>; each method is one unit of SQL (one transaction where it writes two tables).</summary>
public sealed class ForwardCallStore(NpgsqlDataSource db)
{
    private const string PendingColumns = """
        merchant_id, request_id, state, mode, customer_id, meter_slug, hold_id, call,
        input_uncached, cache_read, cache_write, output_tokens, input_characters, input_seconds,
        provider_cost, estimated, next_attempt_at, created_at, updated_at
        """;

    private const string PendingValues = """
        @MerchantId, @RequestId, 'pending', @Mode, @CustomerId, @MeterSlug, @HoldId, @Call::jsonb,
        @InputUncached, @CacheRead, @CacheWrite, @Output, @InputCharacters, @InputSeconds,
        @ProviderCost, true, @Due, @Now, @Now
        """;

    private const string InsertPending = $"INSERT INTO forward_calls ({PendingColumns}) VALUES ({PendingValues})";

    // Whether what the call was admitted with from memory (ForwardLookups, and the key from SecretKeyStore's cache) is
    // still so: the key live, the meter the slug names now and its current price version, the model price that
    // ModelPriceStore.FindCurrentAsync would pick now (the model's own, else its undated alias's; the merchant's newest,
    // else the default's). Each is one primary or unique key lookup.
    private const string Check = """
        SELECT EXISTS (SELECT 1 FROM secret_keys k
                        WHERE k.merchant_id = @MerchantId AND k.secret_key_id = @SecretKeyId AND k.revoked_at IS NULL) AS key_live,
               @AssumedMeterSlug::text IS NULL
                OR coalesce((SELECT m.meter_id || ':' || m.current_version FROM meters m
                              WHERE m.merchant_id = @MerchantId AND m.meter_slug = @AssumedMeterSlug AND m.deleted_at IS NULL), '')
                   = @AssumedMeter AS meter_current,
               @AssumedModels::text[] IS NULL
                OR coalesce((SELECT p.model || ':' || p.merchant_id || ':' || p.version FROM model_prices p
                              WHERE p.merchant_id IN (@MerchantId, '') AND p.model = ANY(@AssumedModels)
                              ORDER BY array_position(@AssumedModels, p.model), p.merchant_id = @MerchantId DESC, p.version DESC
                              LIMIT 1), '')
                   = @AssumedPrice AS price_current
        """;

    // The record of a call that holds nothing, written only when the check passes, in one autocommitted statement.
    private const string InsertPendingChecked = $"""
        WITH checked AS ({Check}),
             inserted AS (INSERT INTO forward_calls ({PendingColumns})
                          SELECT {PendingValues} FROM checked WHERE key_live AND meter_current AND price_current)
        SELECT key_live, meter_current, price_current FROM checked
        """;

    /// <summary>
    /// What a call was admitted with, taken from memory, and checked when its record is written: its secret key, and the
    /// keys of the meter (<see cref="ForwardLookups.KeyOf(Meters.MeterPrice)"/>) and model price
    /// (<see cref="ForwardLookups.KeyOf(string, ModelPrice)"/>) it was priced with; a null slug or model checks nothing.
    /// </summary>
    public sealed record Assumed(string SecretKeyId, string? MeterSlug, string? Meter, string[]? Models, string? Price);

    /// <summary>How the check of <see cref="Assumed"/> came out; only when current was anything written.</summary>
    public enum Checked { Current, KeyRevoked, Moved }

    /// <summary>The check, and with a hold the hold's outcome (the record was written only when the hold was created).</summary>
    public sealed record Begun(Checked Check, CreditStore.HoldOutcome? Hold);

    /// <summary>
    /// Writes the call's record (pending, with the prompt's estimate) before the provider is called, if what it was
    /// admitted with (<paramref name="assumed"/>) still holds. Alone it is one statement and one round trip; with
    /// <paramref name="hold"/>, two round trips of one transaction: BEGIN with the check and the hold's reads, then the
    /// hold and the record with COMMIT, sent only when the check passed and the hold was granted (else ROLLBACK).
    /// </summary>
    public async Task<Begun> BeginAsync(ForwardCallRecord call, DateTimeOffset due, DateTimeOffset now, Assumed assumed,
        CreditStore.HoldRequest? hold, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        if (hold is null)
        {
            var insert = PendingCommand(call, due, now);
            insert.CommandText = InsertPendingChecked;
            AddAssumed(insert, assumed);
            await using var batch = new NpgsqlBatch(c) { BatchCommands = { insert } };
            // Not cancelled by a client that leaves now: a commit cut short may still have happened, and the caller must
            // know whether it did, since a committed record is billed by the crash rule unless it is released.
            await using var reader = await batch.ExecuteReaderAsync(CancellationToken.None);
            return new Begun(await ReadCheckAsync(reader, CancellationToken.None), null);
        }
        var committed = false;
        try
        {
            CreditStore.HoldOutcome outcome;
            await using (var reads = new NpgsqlBatch(c))
            {
                reads.BatchCommands.Add(new NpgsqlBatchCommand("BEGIN"));
                var check = new NpgsqlBatchCommand(Check);
                AddAssumed(check, assumed);
                check.Parameters.Add(new NpgsqlParameter<string>("MerchantId", call.MerchantId));
                reads.BatchCommands.Add(check);
                foreach (var read in hold.Reads()) reads.BatchCommands.Add(read);
                await using var reader = await reads.ExecuteReaderAsync(ct);
                if (await ReadCheckAsync(reader, ct) is not Checked.Current and var moved) return new Begun(moved, null);
                await reader.NextResultAsync(ct);
                outcome = await hold.DecideAsync(reader, ct);
            }
            if (outcome is not CreditStore.HoldOutcome.Created created) return new Begun(Checked.Current, outcome);
            await using (var write = new NpgsqlBatch(c))
            {
                write.BatchCommands.Add(hold.Insert(created.Hold));
                write.BatchCommands.Add(PendingCommand(call with { HoldId = created.Hold.HoldId }, due, now));
                write.BatchCommands.Add(new NpgsqlBatchCommand("COMMIT"));
                // Not cancelled either, for the same reason.
                await write.ExecuteNonQueryAsync(CancellationToken.None);
            }
            committed = true;
            return new Begun(Checked.Current, outcome);
        }
        finally
        {
            if (!committed && c.State == System.Data.ConnectionState.Open)
            {
                await using var rollback = new NpgsqlCommand("ROLLBACK", c);
                await rollback.ExecuteNonQueryAsync(CancellationToken.None);
            }
        }
    }

    private static void AddAssumed(NpgsqlBatchCommand command, Assumed assumed)
    {
        command.Parameters.Add(new NpgsqlParameter<string>("SecretKeyId", assumed.SecretKeyId));
        command.Parameters.Add(Text("AssumedMeterSlug", assumed.MeterSlug));
        command.Parameters.Add(Text("AssumedMeter", assumed.Meter));
        command.Parameters.Add(new NpgsqlParameter("AssumedModels", NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text)
        {
            Value = (object?)assumed.Models ?? DBNull.Value,
        });
        command.Parameters.Add(Text("AssumedPrice", assumed.Price));
    }

    private static async Task<Checked> ReadCheckAsync(NpgsqlDataReader reader, CancellationToken ct)
    {
        if (!await reader.ReadAsync(ct)) throw new InvalidOperationException("The admission check returned no row.");
        return !reader.GetBoolean(0) ? Checked.KeyRevoked
            : reader.GetBoolean(1) && reader.GetBoolean(2) ? Checked.Current
            : Checked.Moved;
    }

    private static NpgsqlBatchCommand PendingCommand(ForwardCallRecord call, DateTimeOffset due, DateTimeOffset now)
    {
        var usage = call.Usage.Usage;
        return new NpgsqlBatchCommand(InsertPending)
        {
            Parameters =
            {
                new NpgsqlParameter<string>("MerchantId", call.MerchantId),
                new NpgsqlParameter<string>("RequestId", call.RequestId),
                new NpgsqlParameter<string>("Mode", ForwardModes.Name(call.Mode)),
                Text("CustomerId", call.CustomerId),
                Text("MeterSlug", call.MeterSlug),
                Text("HoldId", call.HoldId),
                new NpgsqlParameter<string>("Call", JsonSerializer.Serialize(call.Details, LavaJson.Options)),
                new NpgsqlParameter<long>("InputUncached", usage.InputUncached),
                new NpgsqlParameter<long>("CacheRead", usage.CacheRead),
                new NpgsqlParameter<long>("CacheWrite", usage.CacheWrite),
                new NpgsqlParameter<long>("Output", usage.Output),
                new NpgsqlParameter<long>("InputCharacters", usage.InputCharacters),
                new NpgsqlParameter<decimal>("InputSeconds", usage.InputSeconds),
                new NpgsqlParameter("ProviderCost", NpgsqlTypes.NpgsqlDbType.Numeric) { Value = (object?)call.Usage.ProviderCost ?? DBNull.Value },
                new NpgsqlParameter<DateTime>("Due", due.UtcDateTime),
                new NpgsqlParameter<DateTime>("Now", now.UtcDateTime),
            },
        };
    }

    private static NpgsqlParameter Text(string name, string? value) =>
        new(name, NpgsqlTypes.NpgsqlDbType.Text) { Value = (object?)value ?? DBNull.Value };

    private const string UpdateProgress = """
        UPDATE forward_calls
           SET input_uncached = @InputUncached, cache_read = @CacheRead, cache_write = @CacheWrite, output_tokens = @Output,
               input_characters = @InputCharacters, input_seconds = @InputSeconds, provider_cost = @ProviderCost,
               next_attempt_at = @Due, updated_at = @Now
         WHERE merchant_id = @MerchantId AND request_id = @RequestId AND state = 'pending'
        """;

    /// <summary>
    /// While an answer streams: the usage seen so far, and a later deadline before the settle worker may take the call
    /// for one whose process died. Returns false when the call is no longer pending.
    /// </summary>
    public async Task<bool> ProgressAsync(ForwardCallRecord call, DateTimeOffset due, DateTimeOffset now, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        return await c.ExecuteAsync(new CommandDefinition(UpdateProgress, Parameters(call, due, now), cancellationToken: ct)) == 1;
    }

    private const string UpdateServed = """
        UPDATE forward_calls
           SET state = 'served', input_uncached = @InputUncached, cache_read = @CacheRead, cache_write = @CacheWrite,
               output_tokens = @Output, input_characters = @InputCharacters, input_seconds = @InputSeconds,
               provider_cost = @ProviderCost, estimated = @Estimated, anomaly = @Anomaly, served_at = @ServedAt,
               next_attempt_at = @Due, updated_at = @Now
         WHERE merchant_id = @MerchantId AND request_id = @RequestId AND state = 'pending'
        """;

    /// <summary>
    /// The usage to bill is final: written before it is posted, so a failed posting is retried from here. False when
    /// the call was no longer pending (the settle worker already billed it by the crash rule).
    /// </summary>
    public async Task<bool> ServeAsync(ForwardCallRecord call, DateTimeOffset due, DateTimeOffset now, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        return await c.ExecuteAsync(new CommandDefinition(UpdateServed, Parameters(call, due, now), cancellationToken: ct)) == 1;
    }

    private const string UpdateReleased = """
        UPDATE forward_calls SET state = 'released', updated_at = @Now
         WHERE merchant_id = @MerchantId AND request_id = @RequestId AND state = 'pending'
        """;

    /// <summary>Nothing was billable: the record and its hold are closed together.</summary>
    public async Task ReleaseAsync(ForwardCallRecord call, DateTimeOffset now, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        await using var tx = await c.BeginTransactionAsync(ct);
        var released = await c.ExecuteAsync(new CommandDefinition(UpdateReleased,
            new { call.MerchantId, call.RequestId, Now = now.UtcDateTime }, tx, cancellationToken: ct));
        // Not pending any more: the settle worker took it and its report captures the hold.
        if (released == 1 && call.HoldId is { } holdId) await CreditStore.VoidHoldAsync(c, tx, call.MerchantId, holdId, now, ct);
        await tx.CommitAsync(ct);
    }

    private const string UpdateClosed = """
        UPDATE forward_calls SET state = @State, last_error = @Error, updated_at = @Now
         WHERE merchant_id = @MerchantId AND request_id = @RequestId AND state = 'served'
        """;

    /// <summary>Posted, or refused for good (then the hold, if still active, is voided in the same transaction).</summary>
    public async Task CloseAsync(ForwardCallRecord call, bool posted, string? error, bool voidHold, DateTimeOffset now, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        await using var tx = await c.BeginTransactionAsync(ct);
        await c.ExecuteAsync(new CommandDefinition(UpdateClosed, new
        {
            call.MerchantId, call.RequestId, State = posted ? "posted" : "refused", Error = error, Now = now.UtcDateTime,
        }, tx, cancellationToken: ct));
        if (voidHold && call.HoldId is { } holdId) await CreditStore.VoidHoldAsync(c, tx, call.MerchantId, holdId, now, ct);
        await tx.CommitAsync(ct);
    }

    private const string UpdatePosted = """
        UPDATE forward_calls f SET state = 'posted', last_error = NULL, updated_at = @Now
          FROM unnest(@MerchantIds, @RequestIds) AS k(merchant_id, request_id)
         WHERE f.merchant_id = k.merchant_id AND f.request_id = k.request_id AND f.state = 'served'
        """;

    /// <summary>Posted calls whose holds the postings captured: closed together, one statement and one commit for all.</summary>
    public async Task ClosePostedAsync(IReadOnlyCollection<ForwardCallRecord> posted, DateTimeOffset now, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        await c.ExecuteAsync(new CommandDefinition(UpdatePosted, new
        {
            MerchantIds = posted.Select(p => p.MerchantId).ToArray(), RequestIds = posted.Select(p => p.RequestId).ToArray(), Now = now.UtcDateTime,
        }, cancellationToken: ct));
    }

    private const string UpdateRetry = """
        UPDATE forward_calls SET next_attempt_at = @Due, last_error = @Error, updated_at = @Now
         WHERE merchant_id = @MerchantId AND request_id = @RequestId AND state = 'served'
        """;

    /// <summary>Posting failed: when to try again, and why it failed (for operators).</summary>
    public async Task RetryLaterAsync(ForwardCallRecord call, string error, DateTimeOffset due, DateTimeOffset now, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        await c.ExecuteAsync(new CommandDefinition(UpdateRetry, new
        {
            call.MerchantId, call.RequestId, Error = error, Due = due.UtcDateTime, Now = now.UtcDateTime,
        }, cancellationToken: ct));
    }

    // A pending call past its deadline was cut by a crash: it becomes served with the usage last recorded, estimated and
    // flagged (docs/gateway.md). Each claimed call is leased (next_attempt_at moves on) so no other instance takes it
    // while this one posts; SKIP LOCKED lets instances claim side by side without waiting on each other.
    private const string ClaimDue = """
        WITH due AS (
            SELECT merchant_id, request_id
              FROM forward_calls
             WHERE state IN ('pending', 'served') AND next_attempt_at <= @Now
             ORDER BY next_attempt_at
             LIMIT @Limit
               FOR UPDATE SKIP LOCKED
        )
        UPDATE forward_calls f
           SET state           = 'served',
               served_at       = coalesce(f.served_at, @Now),
               estimated       = f.estimated OR f.state = 'pending',
               anomaly         = CASE WHEN f.state = 'pending' THEN @Recovered ELSE f.anomaly END,
               attempts        = f.attempts + 1,
               next_attempt_at = @Lease,
               updated_at      = @Now
          FROM due
         WHERE f.merchant_id = due.merchant_id AND f.request_id = due.request_id
        RETURNING f.merchant_id, f.request_id, f.mode, f.customer_id, f.meter_slug, f.hold_id, f.call::text AS call,
                  f.input_uncached, f.cache_read, f.cache_write, f.output_tokens, f.input_characters, f.input_seconds,
                  f.provider_cost, f.estimated, f.anomaly, f.served_at, f.attempts
        """;

    private sealed record Row(string MerchantId, string RequestId, string Mode, string? CustomerId, string? MeterSlug, string? HoldId,
        string Call, long InputUncached, long CacheRead, long CacheWrite, long OutputTokens, long InputCharacters, decimal InputSeconds,
        decimal? ProviderCost, bool Estimated, string? Anomaly, DateTime ServedAt, int Attempts);

    /// <summary>Up to <paramref name="limit"/> calls due for settling, each leased until <paramref name="lease"/>.</summary>
    public async Task<IReadOnlyList<ForwardCallRecord>> ClaimDueAsync(int limit, DateTimeOffset lease, DateTimeOffset now, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        var rows = await c.QueryAsync<Row>(new CommandDefinition(ClaimDue, new
        {
            Limit = limit, Lease = lease.UtcDateTime, Now = now.UtcDateTime, Recovered = ForwardBilling.Recovered,
        }, cancellationToken: ct));
        return rows.Select(r => new ForwardCallRecord(r.MerchantId, r.RequestId, ForwardModes.Parse(r.Mode), r.CustomerId, r.MeterSlug,
            r.HoldId, JsonSerializer.Deserialize<ForwardCallDetails>(r.Call, LavaJson.Options)!,
            new BilledUsage(new NormalizedUsage(r.InputUncached, r.CacheRead, r.CacheWrite, r.OutputTokens, r.InputCharacters, r.InputSeconds),
                r.ProviderCost, r.Estimated),
            r.Anomaly, new DateTimeOffset(DateTime.SpecifyKind(r.ServedAt, DateTimeKind.Utc)), r.Attempts)).ToList();
    }

    // Across merchants: the settle worker's housekeeping (docs/gateway.md, "Retention"). Only calls settled without
    // trouble — never a pending or served one, nor a refused or flagged one finance follows up — oldest first, a small
    // batch per statement so no transaction holds many rows; SKIP LOCKED keeps two instances from waiting on each other.
    private const string DeleteSettled = """
        DELETE FROM forward_calls f
         USING (SELECT merchant_id, request_id
                  FROM forward_calls
                 WHERE state IN ('posted', 'released') AND anomaly IS NULL AND updated_at < @Before
                 ORDER BY updated_at
                 LIMIT @Limit
                   FOR UPDATE SKIP LOCKED) old
         WHERE f.merchant_id = old.merchant_id AND f.request_id = old.request_id
        """;

    /// <summary>Deletes up to <paramref name="limit"/> records of calls settled before <paramref name="before"/>; returns how many.</summary>
    public async Task<int> DeleteSettledAsync(DateTimeOffset before, int limit, CancellationToken ct)
    {
        await using var c = await db.OpenConnectionAsync(ct);
        return await c.ExecuteAsync(new CommandDefinition(DeleteSettled, new { Before = before.UtcDateTime, Limit = limit }, cancellationToken: ct));
    }

    private static object Parameters(ForwardCallRecord call, DateTimeOffset due, DateTimeOffset now) => new
    {
        // The usage and the deadline: what the progress and served updates change (the call's details never do).
        call.MerchantId, call.RequestId,
        call.Usage.Usage.InputUncached, call.Usage.Usage.CacheRead, call.Usage.Usage.CacheWrite, call.Usage.Usage.Output,
        call.Usage.Usage.InputCharacters, call.Usage.Usage.InputSeconds, call.Usage.ProviderCost, call.Usage.Estimated, call.Anomaly,
        ServedAt = call.ServedAt?.UtcDateTime, Due = due.UtcDateTime, Now = now.UtcDateTime,
    };
}
