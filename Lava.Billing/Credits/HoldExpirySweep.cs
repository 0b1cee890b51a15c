using Dapper;
using Lava.Billing.Infrastructure.Resilience;
using Npgsql;

namespace Lava.Billing.Credits;

/// <summary>The <c>Holds</c> configuration section.</summary>
public sealed class HoldOptions
{
    /// <summary>How often an instance notes holds that expired unreleased (the hold.expired event).</summary>
    public int ExpirySweepMs { get; set; } = 5_000;
}

/// <summary>
/// Notes holds whose expiry passed while they were still active: nothing else changes a hold at its expiry, and the
/// note is the change <c>hold.expired</c> announces (its trigger records the event in this transaction). Runs in
/// every instance; several share the work without waiting on each other (SKIP LOCKED).
/// </summary>
public sealed class HoldExpirySweep(NpgsqlDataSource db, HoldOptions options, TimeProvider clock, ILogger<HoldExpirySweep> log)
    : BackgroundService
{
    /// <summary>Holds noted per statement; a full one is followed at once by another.</summary>
    private const int Batch = 500;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var outage = new OutageLog(log, clock, "Hold expiry sweep");
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                while (await NoteExpiredAsync(Batch, stoppingToken) == Batch) { }
                outage.Succeeded();
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                if (!outage.Failed(e)) log.LogWarning("Noting expired holds failed, retrying after {SweepMs} ms: {Error}", options.ExpirySweepMs, e.Message);
            }
            try
            {
                // Real time, not the injected clock: holds expire by the database's clock, which the sweep reads.
                await Task.Delay(TimeSpan.FromMilliseconds(options.ExpirySweepMs), stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

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
