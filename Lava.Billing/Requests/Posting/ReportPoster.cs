using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Infrastructure.Observability;
using Lava.Billing.Infrastructure.Resilience;
using Npgsql;
using MeterPrice = Lava.Billing.Meters.MeterPrice;

namespace Lava.Billing.Requests.Posting;

/// <summary>
/// Posts usage reports (single reports through group commit, batches, the gateway): every report is priced with its
/// meter's current version against the usage already in its period, posted as a balanced ledger transaction and stored
/// with its response; the reports of one call share one database transaction and two round trips. The poster owns the
/// connection and the transaction: it begins, commits or rolls back, and retries what a retry can fix. What is read
/// under lock is <see cref="LockedReads"/>, what is decided from it <see cref="ReportPlanner"/>, what is written
/// <see cref="ReportWriter"/>. A refused report is left out without touching the others.
/// </summary>
public sealed class ReportPoster(PostingConnections connections, MeterPriceCache meters, PostingPlans plans, TimeProvider clock,
    BillingOptions options, ILogger<ReportPoster> log)
{
    private const int MaxAttempts = 3;

    /// <summary>How long a transaction waits for a row another transaction holds, and whether it tries again after.</summary>
    private sealed record LockWait(int TimeoutMs, bool Retry);

    // A report alone moves only its own customer's rows: it may wait for them, and tries again.
    private static readonly LockWait Alone = new(5_000, Retry: true);
    // Reports sharing a transaction may be many merchants': a row held past this splits them (one by one below), so one
    // contended customer holds back nobody else.
    private static readonly LockWait Shared = new(1_000, Retry: false);
    // One by one after a shared transaction failed: a report whose rows stay held is answered ledger_busy (Retry-After)
    // instead of holding the caller, and with it a group-commit writer, through three long waits.
    private static readonly LockWait OneOfMany = new(1_000, Retry: false);

    private abstract record Attempt
    {
        private Attempt()
        {
        }

        public sealed record Posted(IReadOnlyList<ReportOutcome> Outcomes) : Attempt;

        /// <summary>Nothing was posted and another attempt may succeed; <c>Fresh</c>: read the meters from the database.</summary>
        public sealed record Again(bool Fresh, Exception? Cause) : Attempt;

        public sealed record Failed(Exception Cause) : Attempt;
    }

    public async Task<ReportOutcome> PostAsync(ReportItem item, CancellationToken ct) => (await PostAsync([item], ct))[0];

    /// <summary>On the shared pool, as a batch of reports is posted on its caller's time.</summary>
    public Task<IReadOnlyList<ReportOutcome>> PostAsync(IReadOnlyList<ReportItem> items, CancellationToken ct) =>
        PostAsync(items, PostingPool.Shared, writing: null, ct);

    /// <summary>
    /// <paramref name="pool"/>: where the connection comes from (<see cref="PostingConnections"/>). <paramref name="writing"/>
    /// is called when the reads and the plan are done and the write and COMMIT are sent, or the reports go one by one: from
    /// then on this call is only committing (group commit lets its next batch start then).
    /// </summary>
    public Task<IReadOnlyList<ReportOutcome>> PostAsync(IReadOnlyList<ReportItem> items, PostingPool pool, Action? writing, CancellationToken ct) =>
        PostAsync(items, connections[pool], items.Count == 1 ? Alone : Shared, writing, ct);

    private async Task<IReadOnlyList<ReportOutcome>> PostAsync(IReadOnlyList<ReportItem> items, NpgsqlDataSource db, LockWait wait,
        Action? writing, CancellationToken ct)
    {
        var fresh = false;
        for (var attempt = 1; ; attempt++)
        {
            Attempt result;
            try
            {
                // Inside the try: a meter lookup the database refuses (a slug it cannot even compare) is one item's
                // failure like any other, so it falls back to one by one rather than failing the whole batch.
                var prices = await meters.ResolveAsync(items, fresh, db, ct);
                result = await PostOnceAsync(items, prices, db, wait, writing, ct);
            }
            catch (Exception e) when (!CallerCancelled(e, ct) && !DatabaseRetry.IsConnectionFailure(e))
            {
                // A lost database is nobody's item: that goes to the caller, which retries the whole call (DatabaseRetry)
                // or answers 503 (its outcome unknown; the same request id is safe to send again).
                result = Classify(e, wait);
            }
            switch (result)
            {
                case Attempt.Posted posted:
                    ReportMetrics.Count(posted.Outcomes);
                    return posted.Outcomes;
                case Attempt.Again again when attempt < MaxAttempts:
                    fresh |= again.Fresh;
                    continue;
            }
            var cause = result switch
            {
                Attempt.Failed failed => failed.Cause,
                Attempt.Again { Cause: { } last } => last,
                _ => new InvalidOperationException("the billing state kept moving between the lock step and the plan"),
            };
            if (items.Count == 1)
            {
                var outcome = new ReportOutcome.Refused(Refusal(items[0], cause));
                ReportMetrics.Count([outcome]);
                return [outcome];
            }
            // Whatever went wrong (a row held too long, a bound crossed, a bug), it may be one item's doing: post them one
            // by one, so it fails only its own report and never its neighbours (other merchants' among them, when group
            // commit batched them together).
            log.LogWarning(cause, "A batch of {Count} reports failed as a whole; posting them one by one", items.Count);
            writing?.Invoke();
            var outcomes = new List<ReportOutcome>(items.Count);
            foreach (var item in items) outcomes.Add((await PostAsync([item], db, OneOfMany, writing: null, ct))[0]);
            return outcomes;
        }
    }

    /// <summary>
    /// One attempt, two round trips: BEGIN, the settings and every locked read; then, after the plan, the write and COMMIT
    /// (or ROLLBACK when nothing is to be written, and whenever anything failed).
    /// </summary>
    private async Task<Attempt> PostOnceAsync(IReadOnlyList<ReportItem> items,
        Dictionary<(string MerchantId, string MeterSlug), MeterPrice> prices, NpgsqlDataSource db, LockWait wait, Action? writing,
        CancellationToken ct)
    {
        using var timer = LavaMetrics.Posting();
        var now = clock.GetUtcNow();
        var reports = items.Select(i => PreparedReport.Of(i, prices.GetValueOrDefault((i.MerchantId, i.Body.MeterSlug!)), now)).ToList();
        await using var connection = await db.OpenConnectionAsync(ct);
        var committed = false;
        try
        {
            var state = new LockedState();
            // The settings plan every statement for its values; a switch goes in before a read whose choice differs
            // from the one before it (none at all while no table has settled, nor once every table has but the first).
            var generic = false;
            await using (var lockStep = new NpgsqlBatch(connection))
            {
                lockStep.BatchCommands.Add(new NpgsqlBatchCommand("BEGIN"));
                lockStep.BatchCommands.Add(LockedReads.SettingsCommand(wait.TimeoutMs));
                var steps = new List<LockedRead?>(LockedReads.All.Count + 2);
                foreach (var read in LockedReads.All)
                {
                    if (plans.Generic(read) != generic)
                    {
                        generic = !generic;
                        lockStep.BatchCommands.Add(new NpgsqlBatchCommand(generic ? LockedReads.GenericPlans : LockedReads.CustomPlans));
                        steps.Add(null);
                    }
                    lockStep.BatchCommands.Add(read.Command(reports));
                    steps.Add(read);
                }
                await using var reader = await lockStep.ExecuteReaderAsync(ct);
                // The settings' one row, and each switch's (null); statements without rows (BEGIN, the usage lock) have no
                // result to step over.
                await reader.NextResultAsync(ct);
                foreach (var step in steps)
                {
                    if (step is null)
                    {
                        await reader.NextResultAsync(ct);
                        continue;
                    }
                    if (step.Row is not { } row) continue;
                    while (await reader.ReadAsync(ct)) row(reader, state);
                    await reader.NextResultAsync(ct);
                }
            }

            var plan = ReportPlanner.Plan(reports, state, options);
            if (plan is not ReportPlan.Planned planned) return new Attempt.Again(Fresh: true, Cause: null);
            if (planned.Writes.Requests.Count == 0) return new Attempt.Posted(planned.Outcomes);

            await using (var writeStep = new NpgsqlBatch(connection))
            {
                var writeGeneric = ReportWriter.RunsCachedPlan(planned.Writes, plans);
                if (writeGeneric != generic)
                    writeStep.BatchCommands.Add(new NpgsqlBatchCommand(writeGeneric ? LockedReads.GenericPlans : LockedReads.CustomPlans));
                writeStep.BatchCommands.Add(ReportWriter.Command(planned.Writes));
                writeStep.BatchCommands.Add(new NpgsqlBatchCommand("COMMIT"));
                writing?.Invoke();
                await writeStep.ExecuteNonQueryAsync(ct);
            }
            committed = true;
            return new Attempt.Posted(planned.Outcomes);
        }
        finally
        {
            if (!committed && connection.State == System.Data.ConnectionState.Open)
            {
                await using var rollback = new NpgsqlCommand("ROLLBACK", connection);
                await rollback.ExecuteNonQueryAsync(CancellationToken.None);
            }
        }
    }

    /// <summary>What a failed attempt means: another attempt may succeed (nothing was posted), or it may not.</summary>
    private static Attempt Classify(Exception e, LockWait wait) => e switch
    {
        // A concurrent report took one of these request ids between the lock and the insert: the next attempt sees it
        // committed and answers it as a replay.
        PostgresException { SqlState: PostgresErrorCodes.UniqueViolation } => new Attempt.Again(Fresh: false, e),
        PostgresException { SqlState: PostgresErrorCodes.LockNotAvailable } => wait.Retry ? new Attempt.Again(Fresh: false, e) : new Attempt.Failed(e),
        // PostgreSQL broke a deadlock: nothing was posted, and the next attempt may find the rows free.
        PostgresException { SqlState: PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.SerializationFailure } => new Attempt.Again(Fresh: false, e),
        // A meter never used (so deleted for good) went away between the lock step and the insert: read the meters again.
        PostgresException { SqlState: PostgresErrorCodes.ForeignKeyViolation } => new Attempt.Again(Fresh: true, e),
        _ => new Attempt.Failed(e),
    };

    private static bool CallerCancelled(Exception e, CancellationToken ct) => e is OperationCanceledException && ct.IsCancellationRequested;

    /// <summary>
    /// The answer to a report that failed on its own: a bound it would cross is the caller's, balances that stayed locked
    /// a retry's, anything else a bug.
    /// </summary>
    private ReportRefusal Refusal(ReportItem item, Exception e)
    {
        if (AmountBounds.IsCrossing(e)) return new ReportRefusal.AmountOutOfRange(item.Body.RequestId!, AmountBounds.Describe(e));
        if (e is PostgresException { SqlState: PostgresErrorCodes.LockNotAvailable or PostgresErrorCodes.DeadlockDetected
                or PostgresErrorCodes.SerializationFailure } contended)
        {
            log.LogWarning("Report {RequestId} of merchant {MerchantId} found its balances locked ({SqlState})",
                item.Body.RequestId, item.MerchantId, contended.SqlState);
            return new ReportRefusal.LedgerBusy(1);
        }
        var errorId = Ids.New("err");
        log.LogError(e, "Report {RequestId} of merchant {MerchantId} could not be posted ({ErrorId})", item.Body.RequestId, item.MerchantId, errorId);
        return new ReportRefusal.Failed(errorId);
    }
}
