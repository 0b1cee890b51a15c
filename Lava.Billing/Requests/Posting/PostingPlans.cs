using Dapper;
using Npgsql;

namespace Lava.Billing.Requests.Posting;

/// <summary>
/// Which of the posting's locked reads may run the plan PostgreSQL caches per connection (made once, without the keys)
/// rather than one planned for its keys at every execution: a read whose every table has settled statistics. Planning
/// the reads afresh costs a group commit more than running them; a cached plan is as good as the statistics it was made
/// with, and on a table that was empty or never analysed when it was made every index ties with the key lookup, so it
/// may read the table whole while the table grows (docs/ledger.md, "Plans"). Refreshed in the background from the
/// catalogue, never on the posting's path.
/// </summary>
public sealed class PostingPlans(NpgsqlDataSource db, ILogger<PostingPlans> log) : BackgroundService
{
    /// <summary>How often the tables' statistics are read again: how long a table that outgrew them may keep its cached plans.</summary>
    public static readonly TimeSpan Every = TimeSpan.FromSeconds(2);

    // Every table a locked read touches, by name, with the rows its statistics counted (-1: never analysed nor vacuumed)
    // and the rows written since they were taken.
    private const string SelectStatistics = """
        SELECT c.relname AS name, c.reltuples::float8 AS counted, coalesce(s.n_mod_since_analyze, 0) AS changed
          FROM pg_class c
          LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
         WHERE c.oid IN (SELECT to_regclass(t) FROM unnest(@Tables::text[]) AS t)
        """;

    private static readonly string[] Tables = LockedReads.All.SelectMany(r => r.Tables).Distinct().Order(StringComparer.Ordinal).ToArray();

    // Starts empty (every read planned for its keys) and falls back to empty when the catalogue cannot be read.
    private volatile IReadOnlySet<string> _settled = new HashSet<string>();

    /// <summary>Whether <paramref name="read"/> runs its cached generic plan: every table it touches has settled statistics.</summary>
    public bool Generic(LockedRead read)
    {
        var settled = _settled;
        foreach (var table in read.Tables)
            if (!settled.Contains(table)) return false;
        return true;
    }

    /// <summary>
    /// Settled: analysed (or vacuumed) with rows, so that the plan's estimates tell the key's index from the others, and
    /// written since by at most as many rows as were counted, so that the table has not outgrown them. A table past
    /// that is analysed again by autovacuum (after a tenth of its rows by default), which also makes every cached plan
    /// that reads it be made again.
    /// </summary>
    public static bool Settled(double counted, long changed) => counted > 0 && changed <= counted;

    /// <summary>Reads the tables' statistics now (the background loop does every <see cref="Every"/>).</summary>
    public async Task RefreshAsync(CancellationToken ct)
    {
        try
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            var rows = await connection.QueryAsync<(string Name, double Counted, long Changed)>(
                new CommandDefinition(SelectStatistics, new { Tables }, cancellationToken: ct));
            _settled = rows.Where(r => Settled(r.Counted, r.Changed)).Select(r => r.Name).ToHashSet(StringComparer.Ordinal);
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            _settled = new HashSet<string>();
            log.LogWarning(e, "Could not read the posting tables' statistics; the posting plans its reads for their keys until it can");
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (true)
            {
                await RefreshAsync(stoppingToken);
                await Task.Delay(Every, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }
}
