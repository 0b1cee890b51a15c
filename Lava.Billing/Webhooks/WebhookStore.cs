using Dapper;
using Lava.Billing.Infrastructure;
using Npgsql;

namespace Lava.Billing.Webhooks;

/// <summary>Settable members, not a constructor: Npgsql reports text[] as System.Array, which Dapper will not match to a parameter.</summary>
public sealed record WebhookRow
{
    public required string WebhookId { get; init; }
    public required string Name { get; init; }
    public required string Url { get; init; }
    public string[]? EventTypes { get; init; }
    public DateTime? DisabledAt { get; init; }
    public string? DisabledReason { get; init; }
    public DateTime CreatedAt { get; init; }
}

/// <summary>Fields to set; an unset Optional leaves the column as it is. Enabled: null leaves the state, true clears a disable.</summary>
public sealed record WebhookChanges(Optional<string> Name, Optional<string> Url, Optional<string[]?> EventTypes, bool? Enabled);

/// <summary>A merchant's webhook endpoints. Secrets go in sealed (<see cref="WebhookSecrets"/>) and never come out here.</summary>
public sealed class WebhookStore(NpgsqlDataSource db)
{
    private const string Columns = "webhook_id, name, url, event_types, disabled_at, disabled_reason, created_at";

    private const string Insert = $"""
        INSERT INTO webhooks (merchant_id, webhook_id, name, url, event_types, secret)
        VALUES (@MerchantId, @WebhookId, @Name, @Url, CAST(@EventTypes AS text[]), @Secret)
        RETURNING {Columns}
        """;

    public async Task<WebhookRow> CreateAsync(string merchantId, string name, string url, string[]? eventTypes, string sealedSecret,
        CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.QuerySingleAsync<WebhookRow>(new CommandDefinition(Insert, new
        {
            MerchantId = merchantId, WebhookId = Ids.New("whk"), Name = name, Url = url, EventTypes = eventTypes, Secret = sealedSecret,
        }, cancellationToken: ct));
    }

    private const string SelectPage = $"""
        SELECT {Columns}
          FROM webhooks
         WHERE merchant_id = @MerchantId
           AND deleted_at IS NULL
           AND webhook_id > @After
         ORDER BY webhook_id
         LIMIT @Take
        """;

    public async Task<List<WebhookRow>> ListAsync(string merchantId, string? after, int take, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var rows = await connection.QueryAsync<WebhookRow>(new CommandDefinition(SelectPage,
            new { MerchantId = merchantId, After = after ?? "", Take = take }, cancellationToken: ct));
        return rows.AsList();
    }

    private const string SelectLive = $"""
        SELECT {Columns}
          FROM webhooks
         WHERE merchant_id = @MerchantId AND webhook_id = @WebhookId AND deleted_at IS NULL
        """;

    public async Task<WebhookRow?> FindAsync(string merchantId, string webhookId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.QuerySingleOrDefaultAsync<WebhookRow>(new CommandDefinition(SelectLive,
            new { MerchantId = merchantId, WebhookId = webhookId }, cancellationToken: ct));
    }

    private const string Update = $"""
        UPDATE webhooks
           SET name            = CASE WHEN @SetName       THEN @Name       ELSE name        END,
               url             = CASE WHEN @SetUrl        THEN @Url        ELSE url         END,
               event_types     = CASE WHEN @SetEventTypes THEN CAST(@EventTypes AS text[]) ELSE event_types END,
               disabled_at     = CASE WHEN CAST(@Enabled AS boolean) IS NULL THEN disabled_at
                                      WHEN CAST(@Enabled AS boolean) THEN NULL ELSE coalesce(disabled_at, now()) END,
               disabled_reason = CASE WHEN CAST(@Enabled AS boolean) IS NULL THEN disabled_reason
                                      WHEN CAST(@Enabled AS boolean) THEN NULL ELSE coalesce(disabled_reason, 'disabled by the merchant') END,
               updated_at      = now()
         WHERE merchant_id = @MerchantId AND webhook_id = @WebhookId AND deleted_at IS NULL
        RETURNING {Columns}
        """;

    public async Task<WebhookRow?> UpdateAsync(string merchantId, string webhookId, WebhookChanges changes, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.QuerySingleOrDefaultAsync<WebhookRow>(new CommandDefinition(Update, new
        {
            MerchantId = merchantId, WebhookId = webhookId,
            SetName = changes.Name.IsSet, Name = changes.Name.Value,
            SetUrl = changes.Url.IsSet, Url = changes.Url.Value,
            SetEventTypes = changes.EventTypes.IsSet, EventTypes = changes.EventTypes.Value,
            changes.Enabled,
        }, cancellationToken: ct));
    }

    // Its deliveries still pending end with it: nobody is left to receive them.
    private const string SoftDelete = """
        WITH gone AS (
            UPDATE webhooks SET deleted_at = now(), updated_at = now()
             WHERE merchant_id = @MerchantId AND webhook_id = @WebhookId AND deleted_at IS NULL
            RETURNING merchant_id, webhook_id
        ), ended AS (
            UPDATE webhook_deliveries d
               SET status = 'failed', last_error = 'webhook deleted', lease_until = NULL
              FROM gone
             WHERE d.merchant_id = gone.merchant_id AND d.webhook_id = gone.webhook_id AND d.status = 'pending'
        )
        SELECT count(*) = 1 FROM gone
        """;

    public async Task<bool> DeleteAsync(string merchantId, string webhookId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.ExecuteScalarAsync<bool>(new CommandDefinition(SoftDelete,
            new { MerchantId = merchantId, WebhookId = webhookId }, cancellationToken: ct));
    }

    private const string Roll = $"""
        UPDATE webhooks
           SET previous_secret       = CASE WHEN @OverlapUntil > now() THEN secret ELSE NULL END,
               previous_secret_until = CASE WHEN @OverlapUntil > now() THEN @OverlapUntil ELSE NULL END,
               secret                = @Secret,
               updated_at            = now()
         WHERE merchant_id = @MerchantId AND webhook_id = @WebhookId AND deleted_at IS NULL
        RETURNING {Columns}
        """;

    /// <summary>The new secret signs from now on; the old one signs too until <paramref name="overlapUntil"/>.</summary>
    public async Task<WebhookRow?> RollSecretAsync(string merchantId, string webhookId, string sealedSecret, DateTimeOffset overlapUntil,
        CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.QuerySingleOrDefaultAsync<WebhookRow>(new CommandDefinition(Roll, new
        {
            MerchantId = merchantId, WebhookId = webhookId, Secret = sealedSecret, OverlapUntil = overlapUntil.UtcDateTime,
        }, cancellationToken: ct));
    }
}
