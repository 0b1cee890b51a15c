using System.Threading.Channels;
using Lava.Billing.Infrastructure.Resilience;

namespace Lava.Billing.Requests;

/// <summary>Group commit settings (configuration section <c>Requests:GroupCommit</c>).</summary>
public sealed class GroupCommitOptions
{
    /// <summary>Off: each report is its own database transaction.</summary>
    public bool Enabled { get; init; } = true;
    /// <summary>Batches in flight at once; each holds one connection while it posts.</summary>
    public int Writers { get; init; } = 4;
    /// <summary>At most this many reports share a transaction.</summary>
    public int MaxBatch { get; init; } = 128;
    /// <summary>Reports waiting at most; a full queue makes callers wait (backpressure), it never drops one.</summary>
    public int QueueCapacity { get; init; } = 10_000;
}

/// <summary>
/// Coalesces concurrent single reports into shared database transactions. One report per transaction is bound by the
/// commit (fsync) rate; a writer here takes whatever has queued while the previous batch was in flight, so under load
/// many reports share one commit, and alone a report is posted at once (no added wait). Each caller is answered only
/// after the commit that holds its report. Posting goes through <see cref="UsageReporter.ReportManyAsync"/>, so a
/// refused or failing item never takes its neighbours down and idempotency is exactly that of one-by-one posting.
/// </summary>
public sealed class GroupCommit : BackgroundService
{
    private sealed record Pending(ReportItem Item, TaskCompletionSource<ReportOutcome> Done);

    private readonly Channel<Pending> _queue;
    private readonly UsageReporter _reporter;
    private readonly GroupCommitOptions _options;
    private readonly ILogger<GroupCommit> _log;
    private readonly DatabaseRetry _retry;

    public GroupCommit(UsageReporter reporter, GroupCommitOptions options, ILogger<GroupCommit> log, DatabaseRetry retry)
    {
        _reporter = reporter;
        _retry = retry;
        _options = options;
        _log = log;
        _queue = Channel.CreateBounded<Pending>(new BoundedChannelOptions(Math.Max(options.QueueCapacity, 1))
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleWriter = false,
            SingleReader = false,
        });
    }

    public async Task<ReportOutcome> ReportAsync(ReportItem item, CancellationToken ct)
    {
        if (!_options.Enabled) return (await PostAsync([item], ct))[0];
        var done = new TaskCompletionSource<ReportOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        await _queue.Writer.WriteAsync(new Pending(item, done), ct);
        // The report is posted even if this caller goes away: the work it describes already ran.
        return await done.Task;
    }

    // Reposting after a lost connection is safe: a report that did commit is found by its request id and answered as a replay.
    private async Task<IReadOnlyList<ReportOutcome>> PostAsync(IReadOnlyList<ReportItem> items, CancellationToken ct) =>
        await _retry.ExecuteAsync(async token => await _reporter.ReportManyAsync(items, token), ct);

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(Enumerable.Range(0, Math.Max(_options.Writers, 1)).Select(_ => WriteAsync(stoppingToken)));

    private async Task WriteAsync(CancellationToken stoppingToken)
    {
        var batch = new List<Pending>(_options.MaxBatch);
        try
        {
            while (await _queue.Reader.WaitToReadAsync(stoppingToken))
            {
                while (batch.Count < _options.MaxBatch && _queue.Reader.TryRead(out var pending)) batch.Add(pending);
                if (batch.Count == 0) continue;
                try
                {
                    var outcomes = await PostAsync(batch.Select(p => p.Item).ToList(), CancellationToken.None);
                    for (var i = 0; i < batch.Count; i++) batch[i].Done.TrySetResult(outcomes[i]);
                }
                catch (Exception e)
                {
                    _log.LogError(e, "A group commit of {Count} reports failed", batch.Count);
                    foreach (var pending in batch) pending.Done.TrySetException(e);
                }
                batch.Clear();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            // Shutting down: whatever is still queued is posted here rather than lost.
            while (_queue.Reader.TryRead(out var pending)) batch.Add(pending);
            foreach (var pending in batch)
            {
                try
                {
                    pending.Done.TrySetResult((await _reporter.ReportManyAsync([pending.Item], CancellationToken.None))[0]);
                }
                catch (Exception e)
                {
                    pending.Done.TrySetException(e);
                }
            }
        }
    }
}
