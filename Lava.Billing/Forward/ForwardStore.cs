using Dapper;
using Npgsql;

namespace Lava.Billing.Forward;

/// <summary>What the gateway itself writes and reads; priced usage goes through the Requests feature's reporter.</summary>
public sealed class ForwardStore(NpgsqlDataSource db)
{
    public sealed record GatewayCall(
        string MerchantId, string RequestId, string TransactionId, string? CustomerId,
        string LineageJson, DateTimeOffset At, string[] EntryAccounts, decimal[] EntryAmounts);

    // One statement, so the transaction and its entries commit together; a repeat of the request id writes nothing.
    private const string InsertGatewayCall = """
        WITH txn AS (
            INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, customer_id, lineage, effective_at, created_at)
            VALUES (@MerchantId, @TransactionId, 'gateway', @RequestId, @CustomerId, @LineageJson::jsonb, @At, @At)
            ON CONFLICT (merchant_id, kind, reference) DO NOTHING
            RETURNING merchant_id, transaction_id
        )
        INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount)
        SELECT txn.merchant_id, txn.transaction_id, e.account_id, a.currency, e.amount
          FROM txn
         CROSS JOIN unnest(@EntryAccounts::text[], @EntryAmounts::numeric[]) AS e(account_id, amount)
          JOIN accounts a ON a.merchant_id = txn.merchant_id AND a.account_id = e.account_id
        """;

    /// <summary>
    /// A gateway call that charges nobody: one ledger transaction (kind <c>gateway</c>, reference = request id)
    /// carrying its lineage, with the provider cost as expense when it is known (docs/ledger.md).
    /// </summary>
    public async Task RecordGatewayCallAsync(GatewayCall call, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        await connection.ExecuteAsync(new CommandDefinition(InsertGatewayCall, new
        {
            call.MerchantId, call.TransactionId, call.RequestId, call.CustomerId, call.LineageJson,
            At = call.At.UtcDateTime, call.EntryAccounts, call.EntryAmounts,
        }, cancellationToken: ct));
    }
}
