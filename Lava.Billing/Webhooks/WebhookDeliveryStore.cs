using Dapper;
using Lava.Billing.Infrastructure;
using Npgsql;

namespace Lava.Billing.Webhooks;

public sealed record DeliveryRow(
    string DeliveryId, string WebhookId, long EventSeq, string Event, string Status, int Attempts, DateTime? NextAttemptAt,
    DateTime? LastAttemptAt, int? LastStatusCode, string? LastError, DateTime? DeliveredAt, DateTime CreatedAt);

/// <summary>A delivery this dispatcher holds a lease on, with what it needs to send it.</summary>
public sealed record ClaimedDelivery(
    string DeliveryId, string MerchantId, string WebhookId, long EventSeq, string Type, string Payload, int Attempts, string Url,
    string Secret, string? PreviousSecret, DateTime? PreviousSecretUntil);

/// <summary>Settable members: Npgsql reports text[] as System.Array, which Dapper will not match to a constructor.</summary>
internal sealed class Endpoint
{
    public string MerchantId { get; init; } = "";
    public string WebhookId { get; init; } = "";
    public string[]? EventTypes { get; init; }
}

public sealed record PendingEvent(long EventSeq, string MerchantId, string? CustomerId, string Type, string Snapshot);

/// <summary>The event rendered once, and the endpoints that receive it.</summary>
public sealed record FannedOutEvent(long EventSeq, string Payload, IReadOnlyList<(string MerchantId, string WebhookId, string? CustomerId)> Endpoints);

/// <summary>Outbox events and their deliveries: fan-out, claims under a lease, outcomes, the log and resends.</summary>
public sealed class WebhookDeliveryStore(NpgsqlDataSource db)
{
    // One fan-out at a time across instances, so deliveries of one customer are created in event order.
    private const long FanOutLockKey = 0x4C41_5641_5748_4B; // "LAVAWHK"

    private const string TryLock = "SELECT pg_try_advisory_xact_lock(@Key)";

    private const string SelectUnfanned = """
        SELECT event_seq, merchant_id, customer_id, type, snapshot::text AS snapshot
          FROM webhook_events
         WHERE fanned_out_at IS NULL
         ORDER BY event_seq
         LIMIT @Take
        """;

    private const string SelectEndpoints = """
        SELECT merchant_id, webhook_id, event_types
          FROM webhooks
         WHERE merchant_id = ANY(@MerchantIds) AND deleted_at IS NULL
        """;

    private const string MarkFannedOut = """
        UPDATE webhook_events e
           SET payload = u.payload, fanned_out_at = now()
          FROM unnest(@MerchantIds, @Seqs, @Payloads) AS u(merchant_id, seq, payload)
         WHERE e.merchant_id = u.merchant_id AND e.event_seq = u.seq
        """;

    private const string InsertDeliveries = """
        INSERT INTO webhook_deliveries (merchant_id, delivery_id, webhook_id, event_seq, order_key, status)
        SELECT merchant_id, delivery_id, webhook_id, event_seq, order_key, 'pending'
          FROM unnest(@MerchantIds, @DeliveryIds, @WebhookIds, @Seqs, @OrderKeys)
               AS u(merchant_id, delivery_id, webhook_id, event_seq, order_key)
        """;

    /// <summary>
    /// Renders up to <paramref name="take"/> new events (<paramref name="render"/> reads what it needs in the same
    /// transaction) and creates one delivery per endpoint that takes the event's type. Returns how many events, or 0
    /// when another instance holds the fan-out.
    /// </summary>
    public async Task<int> FanOutAsync(int take,
        Func<NpgsqlConnection, NpgsqlTransaction, IReadOnlyList<PendingEvent>, CancellationToken, Task<IReadOnlyList<string>>> render,
        CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        if (!await connection.ExecuteScalarAsync<bool>(new CommandDefinition(TryLock, new { Key = FanOutLockKey }, tx, cancellationToken: ct)))
            return 0;
        var events = (await connection.QueryAsync<PendingEvent>(new CommandDefinition(SelectUnfanned, new { Take = take }, tx, cancellationToken: ct))).AsList();
        if (events.Count == 0) return 0;
        var payloads = await render(connection, tx, events, ct);
        var endpoints = (await connection.QueryAsync<Endpoint>(new CommandDefinition(SelectEndpoints,
            new { MerchantIds = events.Select(e => e.MerchantId).Distinct().ToArray() }, tx, cancellationToken: ct))).AsList();

        var rows = new List<(string MerchantId, string DeliveryId, string WebhookId, long Seq, string OrderKey)>();
        foreach (var e in events)
        {
            foreach (var w in endpoints.Where(w => w.MerchantId == e.MerchantId && (w.EventTypes is null || w.EventTypes.Contains(e.Type))))
                rows.Add((e.MerchantId, Ids.New("dlv"), w.WebhookId, e.EventSeq, e.CustomerId ?? ""));
        }
        await connection.ExecuteAsync(new CommandDefinition(MarkFannedOut, new
        {
            MerchantIds = events.Select(e => e.MerchantId).ToArray(), Seqs = events.Select(e => e.EventSeq).ToArray(),
            Payloads = payloads.ToArray(),
        }, tx, cancellationToken: ct));
        await connection.ExecuteAsync(new CommandDefinition(InsertDeliveries, new
        {
            MerchantIds = rows.Select(r => r.MerchantId).ToArray(), DeliveryIds = rows.Select(r => r.DeliveryId).ToArray(),
            WebhookIds = rows.Select(r => r.WebhookId).ToArray(), Seqs = rows.Select(r => r.Seq).ToArray(),
            OrderKeys = rows.Select(r => r.OrderKey).ToArray(),
        }, tx, cancellationToken: ct));
        await tx.CommitAsync(ct);
        return events.Count;
    }

    // Claims across instances take turns (a transaction-scoped advisory lock), so the leases the claim below counts are
    // all the leases there are: without it, two instances reading at once would each see room on the same endpoint.
    private const long ClaimLockKey = 0x4C41_5641_5748_4C; // "LAVAWHL"

    private const string LockClaims = "SELECT pg_advisory_xact_lock(@Key)";

    // Fair across endpoints, so one endpoint's backlog never hides another's due deliveries: the claim walks the
    // endpoints that have pending deliveries (a skip scan: one index probe per endpoint, however long its backlog),
    // gives each enabled one room for @PerEndpoint less its unexpired leases (whichever instance holds them; a lease that
    // lapsed, its instance dead, frees its slot), and takes that many of its oldest deliveries that are due, not leased,
    // and first in their line (nothing earlier for the same endpoint and customer is still pending; delivered or given
    // up both free the line: a probe of the line's index per row read, which a NOT EXISTS would let the planner turn
    // into a join that reads the endpoint's whole backlog for each row). A merchant, all its endpoints together, gets room
    // for @PerMerchant less its unexpired leases, so one merchant's many endpoints cannot take every slot. Of those, @Take
    // are leased in turns: every merchant's first before any merchant's second (within a merchant, every endpoint's first
    // before any endpoint's second, counting what each already has in flight), the one whose oldest delivery has waited
    // longest first.
    private const string Claim = """
        WITH RECURSIVE endpoints AS (
            (SELECT d.merchant_id, d.webhook_id
               FROM webhook_deliveries d
              WHERE d.status = 'pending'
              ORDER BY d.merchant_id, d.webhook_id
              LIMIT 1)
            UNION ALL
            SELECT following.merchant_id, following.webhook_id
              FROM endpoints e
             CROSS JOIN LATERAL (
                   SELECT d.merchant_id, d.webhook_id
                     FROM webhook_deliveries d
                    WHERE d.status = 'pending' AND (d.merchant_id, d.webhook_id) > (e.merchant_id, e.webhook_id)
                    ORDER BY d.merchant_id, d.webhook_id
                    LIMIT 1) following
        ), leased AS (
            -- Every lease is on a pending delivery, so every endpoint holding one is among these.
            SELECT e.merchant_id, e.webhook_id,
                   (SELECT count(*) FROM webhook_deliveries l
                     WHERE l.merchant_id = e.merchant_id AND l.webhook_id = e.webhook_id
                       AND l.status = 'pending' AND l.lease_until >= now()) AS leases
              FROM endpoints e
        ), merchant_room AS (
            SELECT merchant_id, @PerMerchant - sum(leases) AS room FROM leased GROUP BY merchant_id
        ), open AS (
            SELECT e.merchant_id, e.webhook_id, @PerEndpoint - e.leases AS room
              FROM leased e
              JOIN webhooks w ON w.merchant_id = e.merchant_id AND w.webhook_id = e.webhook_id
             WHERE w.disabled_at IS NULL AND w.deleted_at IS NULL
               AND e.webhook_id <> ALL(@Busy)
        ), due AS (
            SELECT c.merchant_id, c.delivery_id,
                   -- Counted from the endpoint's deliveries already in flight, so within a merchant an endpoint holding
                   -- fewer goes first: a merchant's busy endpoints do not take its last slots from its idle ones.
                   @PerEndpoint - o.room + row_number() OVER (PARTITION BY c.merchant_id, c.webhook_id ORDER BY c.next_attempt_at, c.delivery_id) AS place,
                   min(c.next_attempt_at) OVER (PARTITION BY c.merchant_id, c.webhook_id) AS oldest
              FROM open o
             CROSS JOIN LATERAL (
                   SELECT d.merchant_id, d.webhook_id, d.delivery_id, d.next_attempt_at
                     FROM webhook_deliveries d
                    WHERE d.merchant_id = o.merchant_id AND d.webhook_id = o.webhook_id
                      AND d.status = 'pending'
                      AND d.next_attempt_at <= now()
                      AND (d.lease_until IS NULL OR d.lease_until < now())
                      AND d.event_seq = (
                          SELECT min(p.event_seq) FROM webhook_deliveries p
                           WHERE p.merchant_id = d.merchant_id AND p.webhook_id = d.webhook_id AND p.order_key = d.order_key
                             AND p.status = 'pending')
                    ORDER BY d.next_attempt_at, d.delivery_id
                    LIMIT greatest(o.room, 0)) c
        ), ranked AS (
            SELECT merchant_id, delivery_id, oldest,
                   row_number() OVER (PARTITION BY merchant_id ORDER BY place, oldest, delivery_id) AS merchant_place,
                   min(oldest) OVER (PARTITION BY merchant_id) AS merchant_oldest
              FROM due
        ), picked AS (
            SELECT r.merchant_id, r.delivery_id
              FROM ranked r
              JOIN merchant_room m ON m.merchant_id = r.merchant_id
             WHERE r.merchant_place <= m.room
             ORDER BY r.merchant_place, r.merchant_oldest, r.oldest, r.delivery_id
             LIMIT @Take
        )
        UPDATE webhook_deliveries d
           SET lease_until = now() + @Lease
          FROM picked, webhook_events e, webhooks w
         WHERE d.merchant_id = picked.merchant_id AND d.delivery_id = picked.delivery_id AND d.status = 'pending'
           AND e.merchant_id = d.merchant_id AND e.event_seq = d.event_seq
           AND w.merchant_id = d.merchant_id AND w.webhook_id = d.webhook_id
        RETURNING d.delivery_id, d.merchant_id, d.webhook_id, d.event_seq, e.type, e.payload, d.attempts, w.url,
                  w.secret, w.previous_secret, w.previous_secret_until
        """;

    /// <summary>
    /// Leases up to <paramref name="take"/> due deliveries, at most <paramref name="perEndpoint"/> in flight per endpoint
    /// and <paramref name="perMerchant"/> per merchant across every instance, in turns across merchants and their
    /// endpoints; <paramref name="busyWebhookIds"/> are endpoints this instance has no room for.
    /// </summary>
    public async Task<List<ClaimedDelivery>> ClaimAsync(int take, int perEndpoint, int perMerchant, string[] busyWebhookIds, TimeSpan lease,
        CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        await connection.ExecuteAsync(new CommandDefinition(LockClaims, new { Key = ClaimLockKey }, tx, cancellationToken: ct));
        var rows = await connection.QueryAsync<ClaimedDelivery>(new CommandDefinition(Claim,
            new { Take = take, PerEndpoint = perEndpoint, PerMerchant = perMerchant, Busy = busyWebhookIds, Lease = lease }, tx, cancellationToken: ct));
        await tx.CommitAsync(ct);
        return rows.AsList();
    }

    private const string Release = """
        UPDATE webhook_deliveries SET lease_until = NULL
         WHERE merchant_id = @MerchantId AND delivery_id = @DeliveryId AND status = 'pending'
        """;

    /// <summary>Gives a claimed delivery back untried (no room for it here, or the service is stopping).</summary>
    public async Task ReleaseAsync(ClaimedDelivery d, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await connection.ExecuteAsync(new CommandDefinition(Release, new { d.MerchantId, d.DeliveryId }, cancellationToken: ct));
    }

    private const string RecordAttempt = """
        UPDATE webhook_deliveries
           SET status           = @Status,
               attempts         = attempts + 1,
               last_attempt_at  = now(),
               last_status_code = @StatusCode,
               last_error       = @Error,
               next_attempt_at  = coalesce(CAST(@NextAttemptAt AS timestamptz), next_attempt_at),
               delivered_at     = CASE WHEN @Status = 'delivered' THEN now() END,
               lease_until      = NULL
         WHERE merchant_id = @MerchantId AND delivery_id = @DeliveryId AND status = 'pending'
        """;

    private const string Disable = """
        UPDATE webhooks SET disabled_at = now(), disabled_reason = @Reason, updated_at = now()
         WHERE merchant_id = @MerchantId AND webhook_id = @WebhookId AND disabled_at IS NULL
        """;

    /// <summary>
    /// Records one attempt: <paramref name="status"/> 'delivered', 'failed' (given up), or 'pending' with the next
    /// attempt's time. <paramref name="disableReason"/> set: the endpoint is disabled in the same transaction.
    /// </summary>
    public async Task RecordAttemptAsync(ClaimedDelivery d, string status, int? statusCode, string? error, DateTimeOffset? nextAttemptAt,
        string? disableReason, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        await connection.ExecuteAsync(new CommandDefinition(RecordAttempt, new
        {
            d.MerchantId, d.DeliveryId, Status = status, StatusCode = statusCode, Error = error, NextAttemptAt = nextAttemptAt?.UtcDateTime,
        }, tx, cancellationToken: ct));
        if (disableReason is not null)
        {
            await connection.ExecuteAsync(new CommandDefinition(Disable,
                new { d.MerchantId, d.WebhookId, Reason = disableReason }, tx, cancellationToken: ct));
        }
        await tx.CommitAsync(ct);
    }

    private const string DeliveryColumns = """
        d.delivery_id, d.webhook_id, d.event_seq, e.type AS event, d.status, d.attempts,
        CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
        d.last_attempt_at, d.last_status_code, d.last_error, d.delivered_at, d.created_at
        """;

    // Newest first: a delivery log is read from the end.
    private const string SelectPage = $"""
        SELECT {DeliveryColumns}
          FROM webhook_deliveries d
          JOIN webhook_events e ON e.merchant_id = d.merchant_id AND e.event_seq = d.event_seq
         WHERE d.merchant_id = @MerchantId AND d.webhook_id = @WebhookId
           AND (@Before = '' OR d.delivery_id < @Before)
         ORDER BY d.delivery_id DESC
         LIMIT @Take
        """;

    public async Task<List<DeliveryRow>> ListAsync(string merchantId, string webhookId, string? before, int take, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var rows = await connection.QueryAsync<DeliveryRow>(new CommandDefinition(SelectPage,
            new { MerchantId = merchantId, WebhookId = webhookId, Before = before ?? "", Take = take }, cancellationToken: ct));
        return rows.AsList();
    }

    // A pending delivery is made due now; a finished one (delivered or given up) is sent again as a new delivery of
    // the same event, so the log keeps both.
    private const string Resend = $"""
        WITH source AS (
            SELECT d.* FROM webhook_deliveries d
              JOIN webhooks w ON w.merchant_id = d.merchant_id AND w.webhook_id = d.webhook_id AND w.deleted_at IS NULL
             WHERE d.merchant_id = @MerchantId AND d.webhook_id = @WebhookId AND d.delivery_id = @DeliveryId
        ), rescheduled AS (
            UPDATE webhook_deliveries d SET next_attempt_at = now()
              FROM source s
             WHERE d.merchant_id = s.merchant_id AND d.delivery_id = s.delivery_id AND s.status = 'pending'
            RETURNING d.delivery_id
        ), copied AS (
            INSERT INTO webhook_deliveries (merchant_id, delivery_id, webhook_id, event_seq, order_key, status)
            SELECT merchant_id, @NewId, webhook_id, event_seq, order_key, 'pending' FROM source WHERE status <> 'pending'
            RETURNING delivery_id
        )
        SELECT delivery_id FROM rescheduled UNION ALL SELECT delivery_id FROM copied
        """;

    private const string SelectOne = $"""
        SELECT {DeliveryColumns}
          FROM webhook_deliveries d
          JOIN webhook_events e ON e.merchant_id = d.merchant_id AND e.event_seq = d.event_seq
         WHERE d.merchant_id = @MerchantId AND d.delivery_id = @DeliveryId
        """;

    /// <summary>The delivery that will carry the event again, or null when the webhook or delivery is unknown.</summary>
    public async Task<DeliveryRow?> ResendAsync(string merchantId, string webhookId, string deliveryId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var id = await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(Resend, new
        {
            MerchantId = merchantId, WebhookId = webhookId, DeliveryId = deliveryId, NewId = Ids.New("dlv"),
        }, cancellationToken: ct));
        if (id is null) return null;
        return await connection.QuerySingleAsync<DeliveryRow>(new CommandDefinition(SelectOne, new { MerchantId = merchantId, DeliveryId = id }, cancellationToken: ct));
    }
}
