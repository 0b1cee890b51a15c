using System.Diagnostics;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Infrastructure.Observability;
using Lava.Billing.Infrastructure.Resilience;

namespace Lava.Billing.Requests.Posting;

/// <summary>Group commit settings (configuration section <c>Requests:GroupCommit</c>).</summary>
public sealed class GroupCommitOptions
{
    /// <summary>Off: each report is its own database transaction.</summary>
    public bool Enabled { get; init; } = true;
    /// <summary>
    /// Batches in flight at once; each holds one connection while it posts. One of them at a time runs its statements, the
    /// others are in their write and commit. Callers that wait for their answer before sending again share the writers'
    /// transactions, so fewer writers carry more reports each: three keep a commit overlapping the next batch's statements,
    /// and two customers' rows held for long (each keeping a writer through its lock waits) still leave one writer.
    /// </summary>
    public int Writers { get; init; } = 3;
    /// <summary>At most this many reports share a transaction.</summary>
    public int MaxBatch { get; init; } = 128;
    /// <summary>Reports waiting at most, all merchants together; a full queue makes callers wait (backpressure), it never drops one.</summary>
    public int QueueCapacity { get; init; } = 10_000;
    /// <summary>Reports of one merchant waiting at most; beyond it only that merchant's callers wait.</summary>
    public int MerchantQueueCapacity { get; init; } = 1_000;
    /// <summary>
    /// A batch still in its statements after this long (its rows held by another transaction, a crowded machine) lets the
    /// next batch start beside it: the most a report waits for another batch's statements.
    /// </summary>
    public int HandOverAfterMs { get; init; } = 50;
}

/// <summary>
/// Coalesces concurrent single reports into shared database transactions. A transaction has a fixed cost whatever it
/// carries (BEGIN, the settings, a dozen statements each planned, COMMIT and its fsync); one report per transaction pays
/// all of it, and is bound by the commit rate. Here many reports share it. Each caller is answered only after the commit
/// that holds its report. Posting goes through <see cref="ReportPoster.PostAsync(IReadOnlyList{ReportItem}, PostingPool, Action?, CancellationToken)"/>,
/// so a refused or failing item never takes its neighbours down and idempotency is exactly that of one-by-one posting.
/// <para>
/// Pipelined: the writers take turns. At most one batch at a time is in its statements (taken off the queue, its meters
/// resolved, its rows locked and read, its plan made); when it sends its write and COMMIT it hands the turn on, and the
/// next writer takes everything that queued meanwhile. Reports arriving during one batch's statements so go together
/// into the next transaction, and a batch grows with the load: the more reports a batch carries and the busier the
/// machine, the longer its statements, and the more reports queue behind them. One batch's commit (the write, the fsync)
/// overlaps the next batch's statements; up to <see cref="GroupCommitOptions.Writers"/> batches are in flight, one in its
/// statements and the others committing. Writers that each take whatever is queued the moment they wake find about one
/// report each once the statements are fast, and so pay the fixed cost per report.
/// </para>
/// <para>
/// Alone, a report finds no batch in its statements and is posted at once: nothing waits for company. A batch that keeps
/// its turn past <see cref="GroupCommitOptions.HandOverAfterMs"/> (another transaction holds its rows; it may wait up to
/// its lock timeout) loses it and the next writer starts beside it, so one contended customer delays the other reports
/// by that much at most, never by its lock waits.
/// </para>
/// <para>
/// Fair between merchants: each merchant has its own queue, and a batch takes one report from each merchant with
/// reports waiting in turn (round robin), so a merchant flooding the service gets its share of every batch and no more;
/// another merchant's report goes into the next batch whatever the flood's length. A merchant's queue is bounded
/// (<see cref="GroupCommitOptions.MerchantQueueCapacity"/>): beyond it that merchant's callers wait for room
/// (backpressure, as the global bound does), while other merchants' reports still enter.
/// </para>
/// </summary>
public sealed class GroupCommit : BackgroundService
{
    /// <summary>One batch's time in its statements, from <paramref name="startedAt"/> (a <see cref="Stopwatch"/> timestamp).</summary>
    private sealed class StatementTurn(long startedAt)
    {
        public long StartedAt { get; } = startedAt;
    }

    private sealed record Pending(ReportItem Item, TaskCompletionSource<ReportOutcome> Done, SemaphoreSlim MerchantRoom, long QueuedAt);

    private readonly ReportPoster _reporter;
    private readonly GroupCommitOptions _options;
    private readonly ILogger<GroupCommit> _log;
    private readonly DatabaseRetry _retry;

    // Guarded by _lock: each merchant's waiting reports, and the merchants that have any, in turn order.
    private readonly Lock _lock = new();
    private readonly Dictionary<string, Queue<Pending>> _queues = new(StringComparer.Ordinal);
    private readonly Queue<string> _turns = new();

    // Also guarded by _lock: the batch in its statements now (null: none), and a signal completed when it hands the turn on.
    private StatementTurn? _statementTurn;
    private TaskCompletionSource _statementTurnHandedOn = NewSignal();

    private readonly SemaphoreSlim _room;
    private readonly SemaphoreSlim _waiting = new(0);
    // One per merchant that ever reported through here: a few hundred bytes each, and merchants are made by operators.
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, SemaphoreSlim> _merchantRoom = new(StringComparer.Ordinal);

    public GroupCommit(ReportPoster reporter, GroupCommitOptions options, ILogger<GroupCommit> log, DatabaseRetry retry)
    {
        _reporter = reporter;
        _retry = retry;
        _options = options;
        _log = log;
        _room = new SemaphoreSlim(Math.Max(options.QueueCapacity, 1));
    }

    /// <summary>Whether reports share transactions (off: each is posted on its caller's time, on the shared pool).</summary>
    public bool Coalesces => _options.Enabled;

    public async Task<ReportOutcome> ReportAsync(ReportItem item, CancellationToken ct)
    {
        if (!_options.Enabled) return (await _retry.ExecuteAsync(async token => await _reporter.PostAsync([item], token), ct))[0];
        // Backpressure rather than 429: a usage report describes work that already ran, and a refusal would have to be
        // retried by the caller or be lost; waiting keeps it, and only the flooding merchant's callers wait.
        var merchantRoom = _merchantRoom.GetOrAdd(item.MerchantId, _ => new SemaphoreSlim(Math.Max(_options.MerchantQueueCapacity, 1)));
        await merchantRoom.WaitAsync(ct);
        try
        {
            await _room.WaitAsync(ct);
        }
        catch
        {
            merchantRoom.Release();
            throw;
        }
        var done = new TaskCompletionSource<ReportOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lock)
        {
            if (!_queues.TryGetValue(item.MerchantId, out var queue))
            {
                queue = new Queue<Pending>();
                _queues[item.MerchantId] = queue;
            }
            if (queue.Count == 0) _turns.Enqueue(item.MerchantId);
            queue.Enqueue(new Pending(item, done, merchantRoom, Stopwatch.GetTimestamp()));
        }
        _waiting.Release();
        LavaMetrics.GroupCommitQueued(1);
        // The report is posted even if this caller goes away: the work it describes already ran.
        return await done.Task;
    }

    /// <summary>Up to <paramref name="max"/> waiting reports, one per merchant in turn; their queue places are freed.</summary>
    private List<Pending> Take(int max)
    {
        var batch = new List<Pending>(Math.Min(max, 64));
        lock (_lock)
        {
            while (batch.Count < max && _turns.TryDequeue(out var merchantId))
            {
                var queue = _queues[merchantId];
                batch.Add(queue.Dequeue());
                if (queue.Count > 0) _turns.Enqueue(merchantId);
                else _queues.Remove(merchantId);
            }
        }
        foreach (var pending in batch)
        {
            pending.MerchantRoom.Release();
            _room.Release();
            LavaMetrics.GroupCommitWaited(pending.QueuedAt);
        }
        return batch;
    }

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(Enumerable.Range(0, Math.Max(_options.Writers, 1)).Select(_ => WriteAsync(stoppingToken)));

    private async Task WriteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (true)
            {
                await _waiting.WaitAsync(stoppingToken);
                var turn = await TakeStatementTurnAsync(stoppingToken);
                try
                {
                    var batch = Take(Math.Max(_options.MaxBatch, 1));
                    // The first report was counted by the wait; the others' counts are taken now (a count whose report another
                    // writer took wakes a writer that finds nothing, which is harmless).
                    for (var i = 1; i < batch.Count; i++) _waiting.Wait(0, CancellationToken.None);
                    if (batch.Count == 0) continue;
                    LavaMetrics.GroupCommitTaken(batch.Count);
                    await PostAsync(batch, () => HandOn(turn));
                }
                finally
                {
                    HandOn(turn);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            // Shutting down: whatever is still queued is posted here rather than lost.
            for (var batch = Take(1); batch.Count > 0; batch = Take(1)) await PostAsync(batch, writing: null);
        }
    }

    /// <summary>
    /// The turn to run statements: at once when no batch is in its statements, else when that batch hands the turn on, or
    /// by taking it over once that batch has had it for <see cref="GroupCommitOptions.HandOverAfterMs"/>.
    /// </summary>
    private async Task<StatementTurn> TakeStatementTurnAsync(CancellationToken ct)
    {
        var handOverAfter = TimeSpan.FromMilliseconds(Math.Max(_options.HandOverAfterMs, 0));
        while (true)
        {
            Task handedOn;
            TimeSpan left;
            lock (_lock)
            {
                left = _statementTurn is null ? TimeSpan.Zero : handOverAfter - Stopwatch.GetElapsedTime(_statementTurn.StartedAt);
                if (left <= TimeSpan.Zero)
                {
                    // A turn taken over belongs to no batch any more: its batch's own hand-on then frees nothing.
                    _statementTurn = new StatementTurn(Stopwatch.GetTimestamp());
                    return _statementTurn;
                }
                handedOn = _statementTurnHandedOn.Task;
            }
            try
            {
                await handedOn.WaitAsync(left, ct);
            }
            catch (TimeoutException)
            {
                // Held too long: taken over at the top of the loop.
            }
        }
    }

    /// <summary>Ends <paramref name="turn"/> if it is still the current one; again (after the write, then after the commit), it does nothing.</summary>
    private void HandOn(StatementTurn turn)
    {
        TaskCompletionSource handedOn;
        lock (_lock)
        {
            if (_statementTurn != turn) return;
            _statementTurn = null;
            handedOn = _statementTurnHandedOn;
            _statementTurnHandedOn = NewSignal();
        }
        handedOn.TrySetResult();
    }

    // Continuations run on the thread pool, never inside the hand-on (which runs in the middle of the poster's batch).
    private static TaskCompletionSource NewSignal() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// Posts <paramref name="items"/> together in one transaction of their own, past the queue, on the writers' pool: for
    /// the gateway's posting queue, which gathered them itself and posts one batch at a time. Each item still gets its own
    /// outcome, and one item's failure fails only that item. Reposting after a lost connection is safe: a report that did
    /// commit is found by its request id and answered as a replay.
    /// </summary>
    public async Task<IReadOnlyList<ReportOutcome>> PostWithRetryAsync(IReadOnlyList<ReportItem> items, CancellationToken ct) =>
        await _retry.ExecuteAsync(async token => await _reporter.PostAsync(items, PostingPool.Reserved, writing: null, token), ct);

    /// <summary><paramref name="writing"/>: called when the batch's statements are done and its write and commit go out.</summary>
    private async Task PostAsync(List<Pending> batch, Action? writing)
    {
        try
        {
            var items = batch.Select(p => p.Item).ToList();
            // Never throws for one report's failure (each gets its own outcome); only a failure of the service itself lands here.
            var outcomes = await _retry.ExecuteAsync(async token => await _reporter.PostAsync(items, PostingPool.Reserved, writing, token),
                CancellationToken.None);
            for (var i = 0; i < batch.Count; i++) batch[i].Done.TrySetResult(outcomes[i]);
        }
        catch (Exception e)
        {
            _log.LogError(e, "A group commit of {Count} reports failed", batch.Count);
            foreach (var pending in batch) pending.Done.TrySetException(e);
        }
    }
}
