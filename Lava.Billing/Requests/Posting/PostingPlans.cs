using Dapper;
using Npgsql;

namespace Lava.Billing.Requests.Posting;

/// <summary>
/// Which of the posting's statements (its locked reads and its write) may run the plan PostgreSQL caches per connection
/// (made once, without the keys) rather than one planned for its keys at every execution: a statement whose every table
/// has settled statistics. Planning them afresh costs a group commit more than running them; a cached plan is as good as
/// the statistics it was made with, and on a table never analysed, or analysed empty and written since, the estimates
/// come from its size alone, so a plan may read it whole while it grows (docs/ledger.md, "Plans"). Refreshed in the
/// background from the catalogue, never on the posting's path.
/// </summary>
public sealed class PostingPlans(NpgsqlDataSource db, ILogger<PostingPlans> log) : BackgroundService
{
    /// <summary>How often the tables' statistics are read again: how long a table that outgrew them may keep its cached plans.</summary>
    public static readonly TimeSpan Every = TimeSpan.FromSeconds(2);

    // Every table a locked read touches, by name: whether ANALYZE (by hand or autovacuum) has ever run on it since the
    // statistics were last reset, the rows it counted then (reltuples; -1 never analysed nor vacuumed, and also set by
    // CREATE INDEX or kept by pg_upgrade, which is why the ANALYZE itself is asked for), and the rows live now.
    private const string SelectStatistics = """
        SELECT c.relname AS name,
               (s.last_analyze IS NOT NULL OR s.last_autoanalyze IS NOT NULL) AS analysed,
               c.reltuples::float8 AS counted,
               coalesce(s.n_live_tup, 0) AS live
          FROM pg_class c
          LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
         WHERE c.oid IN (SELECT to_regclass(t) FROM unnest(@Tables::text[]) AS t)
        """;

    private static readonly string[] Tables = LockedReads.All.SelectMany(r => r.Tables).Concat(ReportWriter.TablesRead).Distinct().Order(StringComparer.Ordinal).ToArray();

    // Starts empty (every read planned for its keys) and falls back to empty when the catalogue cannot be read.
    private volatile IReadOnlySet<string> _settled = new HashSet<string>();

    /// <summary>Whether <paramref name="read"/> runs its cached generic plan: every table it touches has settled statistics.</summary>
    public bool Generic(LockedRead read)
    {
        if (read.Tables.Length == 0) throw new InvalidOperationException($"The locked read '{read.Name}' names no table its plan depends on");
        return Generic(read.Tables);
    }

    /// <summary>Whether a statement that looks rows up in <paramref name="tables"/> (at least one) runs its cached generic plan.</summary>
    public bool Generic(IReadOnlyCollection<string> tables)
    {
        var settled = _settled;
        return tables.Count > 0 && tables.All(settled.Contains);
    }

    /// <summary>
    /// Settled: analysed with rows, so that the plan's estimates tell the key's index from the others, and holding at
    /// most twice the rows counted then, so that the table has not outgrown them. Growth, not rows written: balances
    /// and usage totals are updated by every report, and their row count does not move. A table past that is analysed
    /// again by autovacuum (after a tenth of its rows are written, by default), which also makes every cached plan that
    /// reads it be made again. Or analysed empty and still empty (the tables of a feature nobody uses yet): every index
    /// then ties, and the schema leaves the posting's lookups one index each to choose (ReportPlanEmptyTablesTests), so
    /// the plan cached then stays a lookup by key while the first rows arrive, until the posting sees them.
    /// </summary>
    public static bool Settled(bool analysed, double counted, long live) => analysed && (counted > 0 ? live <= 2 * counted : live == 0);

    /// <summary>Reads the tables' statistics now (the background loop does every <see cref="Every"/>).</summary>
    public async Task RefreshAsync(CancellationToken ct)
    {
        try
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            var rows = await connection.QueryAsync<(string Name, bool Analysed, double Counted, long Live)>(
                new CommandDefinition(SelectStatistics, new { Tables }, cancellationToken: ct));
            _settled = rows.Where(r => Settled(r.Analysed, r.Counted, r.Live)).Select(r => r.Name).ToHashSet(StringComparer.Ordinal);
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
