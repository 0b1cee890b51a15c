using Dapper;
using Lava.Billing.Infrastructure;
using Lava.Billing.Ledger;
using Npgsql;

namespace Lava.Billing.Customers;

/// <summary>A live customer. Metadata is its JSON text as stored.</summary>
public sealed record CustomerRow(
    string CustomerId, string? ReferenceId, string? Name, string? Email, string? Phone, string? Metadata, DateTime CreatedAt,
    string? SubscriptionId = null, string? PlanId = null, string? PlanName = null, string? SubscriptionStatus = null);

public sealed record NewCustomer(string? ReferenceId, string? Name, string? Email, string? Phone, string? Metadata);

/// <summary>Fields to set; an unset Optional leaves the column as it is, a set one with a null value clears it.</summary>
public sealed record CustomerChanges(
    Optional<string> ReferenceId, Optional<string> Name, Optional<string> Email, Optional<string> Phone, Optional<string> Metadata);

public sealed class CustomerStore(NpgsqlDataSource db)
{
    // A customer is shown with its active subscription, if any (the SDK's RestCustomerSubscription).
    private const string Columns = """
        c.customer_id, c.reference_id, c.name, c.email, c.phone, c.metadata::text AS metadata, c.created_at,
        s.subscription_id, s.plan_id, p.name AS plan_name, s.status AS subscription_status
        """;

    private const string SubscriptionJoin = """
        LEFT JOIN subscriptions s ON s.merchant_id = c.merchant_id AND s.customer_id = c.customer_id AND s.status = 'active'
        LEFT JOIN plans p ON p.merchant_id = s.merchant_id AND p.plan_id = s.plan_id
        """;

    private const string Insert = """
        INSERT INTO customers (merchant_id, customer_id, reference_id, name, email, phone, metadata)
        VALUES (@MerchantId, @CustomerId, @ReferenceId, @Name, @Email, @Phone, CAST(@Metadata AS jsonb))
        RETURNING customer_id, reference_id, name, email, phone, metadata::text AS metadata, created_at,
                  NULL::text AS subscription_id, NULL::text AS plan_id, NULL::text AS plan_name, NULL::text AS subscription_status
        """;

    /// <summary>The customer and its ledger accounts (credits, receivable, their cached balances), all or nothing.</summary>
    public async Task<CustomerRow> CreateAsync(string merchantId, NewCustomer customer, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var row = await CreateAsync(connection, tx, merchantId, customer, ct);
        await tx.CommitAsync(ct);
        return row;
    }

    /// <summary>The same inside the caller's transaction (a checkout that creates its buyer with the subscription).</summary>
    public static async Task<CustomerRow> CreateAsync(NpgsqlConnection connection, NpgsqlTransaction tx, string merchantId, NewCustomer customer,
        CancellationToken ct)
    {
        var row = await connection.QuerySingleAsync<CustomerRow>(new CommandDefinition(Insert, new
        {
            MerchantId = merchantId, CustomerId = Ids.New("cus"),
            customer.ReferenceId, customer.Name, customer.Email, customer.Phone, customer.Metadata,
        }, tx, cancellationToken: ct));
        await LedgerAccounts.CreateCustomerAccountsAsync(connection, tx, merchantId, row.CustomerId, ct);
        return row;
    }

    private const string SelectPage = $"""
        SELECT {Columns}
          FROM customers c
        {SubscriptionJoin}
         WHERE c.merchant_id = @MerchantId
           AND c.deleted_at IS NULL
           AND c.customer_id > @After
         ORDER BY c.customer_id
         LIMIT @Take
        """;

    public async Task<List<CustomerRow>> ListAsync(string merchantId, string? after, int take, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        var rows = await connection.QueryAsync<CustomerRow>(new CommandDefinition(SelectPage,
            new { MerchantId = merchantId, After = after ?? "", Take = take }, cancellationToken: ct));
        return rows.AsList();
    }

    private const string SelectLive = $"""
        SELECT {Columns}
          FROM customers c
        {SubscriptionJoin}
         WHERE c.merchant_id = @MerchantId
           AND c.customer_id = @CustomerId
           AND c.deleted_at IS NULL
        """;

    public async Task<CustomerRow?> FindAsync(string merchantId, string customerId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.QuerySingleOrDefaultAsync<CustomerRow>(new CommandDefinition(SelectLive,
            new { MerchantId = merchantId, CustomerId = customerId }, cancellationToken: ct));
    }

    // Deleted customers too: a webhook event about a customer is rendered after its change committed, and a
    // customer.deleted event describes the customer that was deleted.
    private const string SelectMany = $"""
        SELECT c.merchant_id, {Columns}
          FROM customers c
        {SubscriptionJoin}
         WHERE (c.merchant_id, c.customer_id) IN (SELECT * FROM unnest(@MerchantIds, @CustomerIds))
        """;

    /// <summary>Customers by (merchant, customer) pairs, deleted ones included.</summary>
    public static async Task<Dictionary<(string MerchantId, string CustomerId), CustomerRow>> FindManyAsync(
        NpgsqlConnection connection, NpgsqlTransaction? tx, IReadOnlyList<(string MerchantId, string CustomerId)> keys, CancellationToken ct)
    {
        var rows = await connection.QueryAsync<string, CustomerRow, (string MerchantId, CustomerRow Row)>(new CommandDefinition(SelectMany, new
        {
            MerchantIds = keys.Select(k => k.MerchantId).ToArray(), CustomerIds = keys.Select(k => k.CustomerId).ToArray(),
        }, tx, cancellationToken: ct), (merchantId, row) => (merchantId, row), splitOn: "customer_id");
        return rows.ToDictionary(r => (r.MerchantId, r.Row.CustomerId), r => r.Row);
    }

    private const string SelectExists = """
        SELECT EXISTS (SELECT 1 FROM customers WHERE merchant_id = @MerchantId AND customer_id = @CustomerId AND deleted_at IS NULL)
        """;

    /// <summary>Whether a live (not deleted) customer has this id.</summary>
    public async Task<bool> ExistsAsync(string merchantId, string customerId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await ExistsAsync(connection, null, merchantId, customerId, ct);
    }

    /// <summary>The same check inside a caller's transaction.</summary>
    public static Task<bool> ExistsAsync(NpgsqlConnection connection, NpgsqlTransaction? tx, string merchantId, string customerId, CancellationToken ct) =>
        connection.ExecuteScalarAsync<bool>(new CommandDefinition(SelectExists,
            new { MerchantId = merchantId, CustomerId = customerId }, tx, cancellationToken: ct));

    private const string Update = $"""
        WITH c AS (
        UPDATE customers
           SET reference_id = CASE WHEN @SetReferenceId THEN @ReferenceId ELSE reference_id END,
               name         = CASE WHEN @SetName        THEN @Name        ELSE name         END,
               email        = CASE WHEN @SetEmail       THEN @Email       ELSE email        END,
               phone        = CASE WHEN @SetPhone       THEN @Phone       ELSE phone        END,
               metadata     = CASE WHEN @SetMetadata    THEN CAST(@Metadata AS jsonb) ELSE metadata END,
               updated_at   = now()
         WHERE merchant_id = @MerchantId
           AND customer_id = @CustomerId
           AND deleted_at IS NULL
        RETURNING *
        )
        SELECT {Columns}
          FROM c
        {SubscriptionJoin}
        """;

    /// <summary>The updated customer, or null when no live customer has this id.</summary>
    public async Task<CustomerRow?> UpdateAsync(string merchantId, string customerId, CustomerChanges changes, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.QuerySingleOrDefaultAsync<CustomerRow>(new CommandDefinition(Update, new
        {
            MerchantId = merchantId, CustomerId = customerId,
            SetReferenceId = changes.ReferenceId.IsSet, ReferenceId = changes.ReferenceId.Value,
            SetName = changes.Name.IsSet, Name = changes.Name.Value,
            SetEmail = changes.Email.IsSet, Email = changes.Email.Value,
            SetPhone = changes.Phone.IsSet, Phone = changes.Phone.Value,
            SetMetadata = changes.Metadata.IsSet, Metadata = changes.Metadata.Value,
        }, cancellationToken: ct));
    }

    public enum DeleteOutcome { Deleted, NotFound, HasSubscription }

    // The row lock waits for a subscribe in flight (it shares the row), so the check below sees its subscription.
    private const string LockLive = """
        SELECT customer_id FROM customers
         WHERE merchant_id = @MerchantId AND customer_id = @CustomerId AND deleted_at IS NULL
           FOR UPDATE
        """;

    private const string HasActiveSubscription = """
        SELECT EXISTS (SELECT 1 FROM subscriptions WHERE merchant_id = @MerchantId AND customer_id = @CustomerId AND status = 'active')
        """;

    // Soft: the customer's ledger accounts and history reference it and stay.
    private const string SoftDelete = """
        UPDATE customers
           SET deleted_at = now(), updated_at = now()
         WHERE merchant_id = @MerchantId
           AND customer_id = @CustomerId
        """;

    /// <summary>A customer with an active subscription is refused: its cycles would keep recording payments.</summary>
    public async Task<DeleteOutcome> DeleteAsync(string merchantId, string customerId, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await using var tx = await connection.BeginTransactionAsync(ct);
        var args = new { MerchantId = merchantId, CustomerId = customerId };
        if (await connection.QuerySingleOrDefaultAsync<string>(new CommandDefinition(LockLive, args, tx, cancellationToken: ct)) is null)
            return DeleteOutcome.NotFound;
        if (await connection.ExecuteScalarAsync<bool>(new CommandDefinition(HasActiveSubscription, args, tx, cancellationToken: ct)))
            return DeleteOutcome.HasSubscription;
        await connection.ExecuteAsync(new CommandDefinition(SoftDelete, args, tx, cancellationToken: ct));
        await tx.CommitAsync(ct);
        return DeleteOutcome.Deleted;
    }
}
