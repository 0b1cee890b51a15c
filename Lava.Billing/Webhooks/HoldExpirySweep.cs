using Dapper;
using Npgsql;

namespace Lava.Billing.Webhooks;

/// <summary>
/// Notes holds whose expiry passed while they were still active: nothing else changes a hold at its expiry, and the
/// note is the change <c>hold.expired</c> announces (its trigger records the event in this transaction). Run by the
/// dispatcher; several instances share the work without waiting on each other (SKIP LOCKED).
/// </summary>
public sealed class HoldExpirySweep(NpgsqlDataSource db)
{
    // Oldest first, so a backlog drains in expiry order; a hold a report or a void holds locked is left for the next
    // round (by then it is captured or voided, or still expired).
    private const string NoteExpired = """
        WITH due AS (
            SELECT h.merchant_id, h.hold_id
              FROM holds h
             WHERE h.status = 'active' AND h.expired_at IS NULL AND h.expires_at <= now()
             ORDER BY h.expires_at
             LIMIT @Take
               FOR UPDATE OF h SKIP LOCKED
        )
        UPDATE holds h SET expired_at = now()
          FROM due
         WHERE h.merchant_id = due.merchant_id AND h.hold_id = due.hold_id AND h.status = 'active'
        """;

    /// <summary>Notes up to <paramref name="take"/> expired holds; returns how many.</summary>
    public async Task<int> NoteExpiredAsync(int take, CancellationToken ct)
    {
        await using var connection = await db.OpenConnectionAsync(ct);
        return await connection.ExecuteAsync(new CommandDefinition(NoteExpired, new { Take = take }, cancellationToken: ct));
    }
}
