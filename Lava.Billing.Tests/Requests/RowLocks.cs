using Dapper;
using Lava.Billing.Ledger;
using Lava.Billing.Tests.Infrastructure;
using Npgsql;

namespace Lava.Billing.Tests.Requests;

/// <summary>Rows held from another transaction, as a long-running writer would, to stop a posting at a known step.</summary>
public static class RowLocks
{
    /// <summary>Locks the customer's balance rows: a posting for that customer waits in its locked reads.</summary>
    public static async Task<NpgsqlTransaction> LockBalancesAsync(this LavaApp app, string merchantId, string customer)
    {
        var connection = new NpgsqlConnection(app.ConnectionString);
        await connection.OpenAsync();
        var tx = await connection.BeginTransactionAsync();
        await using var command = new NpgsqlCommand(
            "SELECT 1 FROM account_balances WHERE merchant_id = @m AND account_id = ANY(@a) FOR UPDATE", connection, tx);
        command.Parameters.AddWithValue("m", merchantId);
        command.Parameters.AddWithValue("a", new[] { LedgerAccounts.CreditsBundle(customer), LedgerAccounts.CreditsCycle(customer), LedgerAccounts.Receivable(customer) });
        await command.ExecuteNonQueryAsync();
        return tx;
    }

    /// <summary>
    /// Inserts a request row under <paramref name="requestId"/> without committing it: a posting of that request id reads
    /// nothing there (the row is not committed), then waits in its write, on the unique key, until this transaction ends.
    /// As a replica session, so the row needs no ledger transaction behind it; rolled back, it never existed.
    /// </summary>
    public static async Task<NpgsqlTransaction> HoldRequestIdAsync(this LavaApp app, string merchantId, string requestId)
    {
        var replica = new NpgsqlConnectionStringBuilder(app.AdminConnectionString) { Options = "-c session_replication_role=replica" };
        var connection = new NpgsqlConnection(replica.ConnectionString);
        await connection.OpenAsync();
        var tx = await connection.BeginTransactionAsync();
        await connection.ExecuteAsync("""
            INSERT INTO requests (merchant_id, request_id, fingerprint, mode, meter_id, price_version, input_tokens, output_tokens,
                                  input_characters, output_characters, input_seconds, output_seconds, charge_amount, occurred_at,
                                  transaction_id, status_code, response)
            VALUES (@merchantId, @requestId, '\x00', 'meter_only', 'mtr_held', 1, 0, 0, 0, 0, 0, 0, 0, now(), 'txn_held', 201, '{}')
            """, new { merchantId, requestId }, tx);
        return tx;
    }

    /// <summary>Returns once a session of the app's database waits for a lock another transaction holds (30 s at most).</summary>
    public static async Task UntilASessionWaitsForALockAsync(this LavaApp app)
    {
        for (var tries = 0; tries < 600; tries++)
        {
            if (await app.SessionsWaitingForALockAsync() > 0) return;
            await Task.Delay(50);
        }
        throw new TimeoutException("no session waited for a lock within 30 s");
    }

    /// <summary>Sessions of the app's database waiting for a lock another transaction holds, now.</summary>
    public static async Task<int> SessionsWaitingForALockAsync(this LavaApp app)
    {
        await using var admin = new NpgsqlConnection(app.AdminConnectionString);
        return await admin.QuerySingleAsync<int>(
            "SELECT count(*)::int FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'");
    }
}
