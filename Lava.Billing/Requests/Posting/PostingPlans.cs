using Dapper;
using Npgsql;

namespace Lava.Billing.Requests.Posting;

/// <summary>
/// Which of the posting's statements (its locked reads and its write) may run the plan PostgreSQL caches per connection
/// (made once, without the keys) rather than one planned for its keys at every execution: a statement whose every table
/// has settled statistics. Planning them afresh costs a group commit more than running them; a cached plan is as good as
/// the statistics it was made with, and on a table never analysed, or analysed empty and written since, the estimates
/// come from its size alone, so a plan may read it whole while it grows (docs/ledger.md, "Plans"). Refreshed in the
/// background from the catalogue, never on the posting's path; a table that has rows its statistics have not counted is
/// analysed then (<see cref="ToAnalyse"/>), so that its plans do not wait for autovacuum's next round.
/// </summary>
public sealed class PostingPlans(NpgsqlDataSource db, BillingOptions options, TimeProvider clock, ILogger<PostingPlans> log) : BackgroundService
{
    /// <summary>How often the tables' statistics are read again: how long a table that outgrew them may keep its cached plans.</summary>
    public static readonly TimeSpan Every = TimeSpan.FromSeconds(2);

    // Every table a locked read touches, by name: whether ANALYZE (by hand or autovacuum) has ever run on it since the
    // statistics were last reset, the rows it counted then (reltuples; -1 never analysed nor vacuumed, and also set by
    // CREATE INDEX or kept by pg_upgrade, which is why the ANALYZE itself is asked for), the rows live now, and whether
    // this role may analyse it (its owner or the database's: otherwise PostgreSQL skips it with a warning in its log).
    private const string SelectStatistics = """
        SELECT c.relname AS name,
               (s.last_analyze IS NOT NULL OR s.last_autoanalyze IS NOT NULL) AS analysed,
               c.reltuples::float8 AS counted,
               coalesce(s.n_live_tup, 0) AS live,
               (pg_has_role(c.relowner, 'USAGE')
                OR pg_has_role((SELECT d.datdba FROM pg_database d WHERE d.datname = current_database()), 'USAGE')) AS may_analyse
          FROM pg_class c
          LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
         WHERE c.oid IN (SELECT to_regclass(t) FROM unnest(@Tables::text[]) AS t)
        """;

    /// <summary>
    /// The fewest rows of an unsettled table that the service analyses itself: autovacuum's own default threshold (50 rows
    /// changed), so the service never analyses a smaller table than autovacuum could. Below it the table is left to
    /// autovacuum. On a young ledger analysed with 50 rows in each table it fills per report (requests, transactions,
    /// usage totals, holds, keys, meters) the reads and the write still run key lookups in their cached plans
    /// (<c>ReportPlanSmallLedgerTests</c>); the capture of holds does not, see <see cref="HoldsForCachedCapture"/>.
    /// </summary>
    public const long AnalyseFromRows = 50;

    /// <summary>
    /// The rows holds must have been analysed with before the write that captures holds runs its cached plan: with 50, that
    /// plan read the active holds' index whole (<c>ReportPlanSmallLedgerTests</c>); with thousands, it looks them up by key.
    /// </summary>
    public const double HoldsForCachedCapture = 1_000;

    /// <summary>
    /// The least time between two analyses of one table by this instance (several instances may each analyse it): what
    /// bounds the work when an analyse does not settle a table (another session held its lock and it was skipped).
    /// Otherwise a table is analysed again only once it has doubled, so a young table is analysed a few times over its
    /// first minutes and rarely after.
    /// </summary>
    public static readonly TimeSpan AnalyseAtMostEvery = TimeSpan.FromSeconds(5);

    /// <summary>Every table a posting statement looks rows up in: the tables whose statistics are read.</summary>
    public static readonly IReadOnlyList<string> Tables = LockedReads.All.SelectMany(r => r.Tables).Concat(ReportWriter.TablesReadCapturingHolds).Distinct().Order(StringComparer.Ordinal).ToArray();

    /// <summary>What the statistics of a table say about the plans that may be cached on it.</summary>
    public enum TableStatistics
    {
        /// <summary>Never analysed, analysed empty and written since, or outgrown since: plans are made for the keys.</summary>
        Unsettled,
        /// <summary>Analysed empty and still empty: a cached plan will do where the schema leaves its lookups one index.</summary>
        Empty,
        /// <summary>Analysed with rows and at most doubled since.</summary>
        WithRows,
    }

    /// <summary>
    /// The tables of the features a ledger may not use (plans with their meters and bundles, the gateway's holds), empty for
    /// as long as nobody does: the posting's lookups in them have one usable index each, their key's, so a plan cached on
    /// them analysed empty is still a lookup by key when rows arrive (ReportPlanEmptyTablesTests). Any other table must
    /// have been analysed with rows: on a ledger analysed before its first report, the cached replay read looked requests
    /// up through another index by merchant only, and the write read the usage totals whole (ReportPlanFreshLedgerTests).
    /// </summary>
    public static readonly IReadOnlySet<string> CachedWhenEmpty =
        new HashSet<string>(["subscriptions", "plan_meters", "credit_bundles", "holds"], StringComparer.Ordinal);

    // Starts empty (every statement planned for its keys) and falls back to empty when the catalogue cannot be read.
    private volatile IReadOnlyDictionary<string, (TableStatistics Statistics, double Counted)> _tables =
        new Dictionary<string, (TableStatistics, double)>();

    // When this instance last analysed each table (the background loop writes it, and so may a caller of RefreshAsync).
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, DateTimeOffset> _analysedAt = new(StringComparer.Ordinal);

    /// <summary>Whether <paramref name="read"/> runs its cached generic plan: every table it touches has settled statistics.</summary>
    public bool Generic(LockedRead read)
    {
        if (read.Tables.Length == 0) throw new InvalidOperationException($"The locked read '{read.Name}' names no table its plan depends on");
        return Generic(read.Tables);
    }

    /// <summary>
    /// Whether a statement that looks rows up in <paramref name="tables"/> (at least one) runs its cached generic plan:
    /// each table analysed with rows, or one of <see cref="CachedWhenEmpty"/> analysed empty and still empty unless
    /// <paramref name="rowsRequired"/> (a statement whose join order, not only its index, a table's emptiness could turn).
    /// </summary>
    public bool Generic(IReadOnlyCollection<string> tables, bool rowsRequired = false)
    {
        var known = _tables;
        return tables.Count > 0 && tables.All(t => known.GetValueOrDefault(t).Statistics switch
        {
            TableStatistics.WithRows => true,
            TableStatistics.Empty => !rowsRequired && CachedWhenEmpty.Contains(t),
            _ => false,
        });
    }

    /// <summary>
    /// Whether <paramref name="table"/> is settled with rows and counted at least <paramref name="rows"/> (by its last
    /// ANALYZE, or by a VACUUM since, which also counts; the service analyses a table again each time it doubles, so a
    /// count from a VACUUM sits on column statistics of at least half as many rows).
    /// </summary>
    public bool AnalysedWithAtLeast(string table, double rows) =>
        _tables.GetValueOrDefault(table) is { Statistics: TableStatistics.WithRows } t && t.Counted >= rows;

    /// <summary>
    /// Settled with rows: analysed with rows, so that the plan's estimates tell the key's index from the others, and
    /// holding at most twice the rows counted then, so that the table has not outgrown them. Growth, not rows written:
    /// balances and usage totals are updated by every report, and their row count does not move. A table past that is
    /// analysed again, by this class once it holds <see cref="AnalyseFromRows"/> rows (<see cref="ToAnalyse"/>) or by
    /// autovacuum (after a tenth of its rows are written, by default), which also makes every cached plan that reads it be
    /// made again. Settled empty: analysed empty and still empty; from the first row the posting
    /// sees, the table is planned for its keys until it is analysed with rows. Not a table emptied by TRUNCATE,
    /// which keeps its last analyse but has its count reset (-1): PostgreSQL estimates it as never analysed.
    /// </summary>
    public static TableStatistics Classify(bool analysed, double counted, long live) =>
        !analysed ? TableStatistics.Unsettled
        : counted > 0 ? (live <= 2 * counted ? TableStatistics.WithRows : TableStatistics.Unsettled)
        : counted == 0 && live == 0 ? TableStatistics.Empty : TableStatistics.Unsettled;

    /// <summary>
    /// The tables to analyse now, of the statistics read: ones this role may analyse, unsettled (never analysed, analysed
    /// empty and written since, or doubled since), holding at least <see cref="AnalyseFromRows"/> rows live or counted,
    /// and not analysed by this instance within <see cref="AnalyseAtMostEvery"/> (<paramref name="analysedRecently"/>).
    /// Counted too: after a failover, a crash or a reset of the statistics the live count starts again from nothing while
    /// the table keeps its rows and its count, and is unsettled (its last analyse forgotten) until analysed again.
    /// </summary>
    public static IReadOnlyList<string> ToAnalyse(IEnumerable<TableRow> tables, Func<string, bool> analysedRecently) =>
        tables.Where(t => t.MayAnalyse && Math.Max(t.Live, t.Counted) >= AnalyseFromRows
                          && Classify(t.Analysed, t.Counted, t.Live) == TableStatistics.Unsettled && !analysedRecently(t.Name))
            .Select(t => t.Name).Order(StringComparer.Ordinal).ToList();

    /// <summary>One table's row of the statistics read.</summary>
    public sealed record TableRow(string Name, bool Analysed, double Counted, long Live, bool MayAnalyse);

    /// <summary>
    /// Reads the tables' statistics now (the background loop does every <see cref="Every"/>), first analysing those
    /// <see cref="ToAnalyse"/> names when <see cref="BillingOptions.AnalyseUnsettledTables"/> is on.
    /// </summary>
    public async Task RefreshAsync(CancellationToken ct)
    {
        try
        {
            await using var connection = await db.OpenConnectionAsync(ct);
            var rows = await ReadStatisticsAsync(connection, ct);
            // Published before any analyse, which can take a while on a large table: the posting follows the statistics as
            // they are meanwhile.
            Publish(rows);
            if (options.AnalyseUnsettledTables && await AnalyseAsync(connection, rows, ct)) Publish(await ReadStatisticsAsync(connection, ct));
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            _tables = new Dictionary<string, (TableStatistics, double)>();
            log.LogWarning(e, "Could not read the posting tables' statistics; the posting plans its reads for their keys until it can");
        }
    }

    private void Publish(IEnumerable<TableRow> rows) =>
        _tables = rows.ToDictionary(r => r.Name, r => (Classify(r.Analysed, r.Counted, r.Live), r.Counted), StringComparer.Ordinal);

    internal static async Task<List<TableRow>> ReadStatisticsAsync(NpgsqlConnection connection, CancellationToken ct) =>
        (await connection.QueryAsync<(string Name, bool Analysed, double Counted, long Live, bool MayAnalyse)>(
            new CommandDefinition(SelectStatistics, new { Tables }, cancellationToken: ct)))
        .Select(r => new TableRow(r.Name, r.Analysed, r.Counted, r.Live, r.MayAnalyse)).ToList();

    // ANALYZE takes a lock that only other maintenance (autovacuum, another instance's ANALYZE, CREATE INDEX) contends
    // for, never the posting's reads and writes; SKIP_LOCKED passes over a table another session is working on rather
    // than waiting for it. DDL that arrives while it runs (a migration) waits for it, as it would behind any ANALYZE: one
    // of requests at tens of thousands of rows took 0.2-1 s in the bench, and a migration waits at most its lock timeout
    // before it gives way and tries again (MigrationOptions). A failure is logged and leaves the statistics as they were:
    // the posting then keeps planning that table's statements for their keys, which is slower, never wrong.
    private async Task<bool> AnalyseAsync(NpgsqlConnection connection, IEnumerable<TableRow> rows, CancellationToken ct)
    {
        var now = clock.GetUtcNow();
        var due = ToAnalyse(rows, name => _analysedAt.TryGetValue(name, out var at) && now - at < AnalyseAtMostEvery);
        if (due.Count == 0) return false;
        foreach (var name in due) _analysedAt[name] = now;
        try
        {
            var names = string.Join(", ", due.Select(n => $"\"{n}\""));   // names of this class's own list, quoted all the same
            await connection.ExecuteAsync(new CommandDefinition($"ANALYZE (SKIP_LOCKED) {names}", cancellationToken: ct));
            log.LogDebug("Analysed {Tables}: they held rows their statistics had not counted", names);
            return true;
        }
        catch (Exception e) when (e is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            log.LogWarning(e, "Could not analyse {Tables}; the posting plans their reads for their keys until they are analysed", string.Join(", ", due));
            return false;
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
