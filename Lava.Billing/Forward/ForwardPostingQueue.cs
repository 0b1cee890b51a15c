using System.Threading.Channels;
using Lava.Billing.Infrastructure.Observability;

namespace Lava.Billing.Forward;

/// <summary>
/// Posts served gateway calls after their answer went out, off the client's path: the served usage is already durable
/// (the crash rule), so what is left is posting it, which a client need not wait for. Bounded (<see cref="MaxQueued"/>
/// calls, <see cref="MaxQueuedPerMerchant"/> of one merchant) and fair: batches take the merchants' calls in turn, so
/// one busy merchant cannot delay another's. Nothing is ever dropped: a call the queue cannot take is posted by its own
/// request as before, and a call that was queued when the process died is posted by <see cref="ForwardSettler"/> once
/// its posting lease ran out (a second posting of a posted call is a replay, never a second charge).
/// </summary>
public sealed class ForwardPostingQueue(ForwardBilling billing, ForwardOptions options, ILogger<ForwardPostingQueue> log) : BackgroundService
{
    /// <summary>Calls waiting at most; about 20 s of postings at the gateway's measured rate, below the posting lease.</summary>
    internal const int MaxQueued = 10_000;

    /// <summary>One merchant's share; past it that merchant's calls are posted on their own requests' time.</summary>
    internal const int MaxQueuedPerMerchant = 2_000;

    /// <summary>Calls posted in one posting transaction, then closed in one statement.</summary>
    internal const int MaxBatch = 32;

    private readonly Lock _lock = new();
    private readonly Dictionary<string, Queue<ForwardCallRecord>> _byMerchant = new(StringComparer.Ordinal);
    // Merchants with calls waiting, in the order they get their next turn.
    private readonly Queue<string> _turns = new();
    private int _queued;
    private int _posting;
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    // A batch's worth is waiting: the gathering delay ends early, since waiting longer cannot make the batch bigger.
    private readonly Channel<bool> _full = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    /// <summary>Calls queued or being posted: none means every call handed over so far has been posted (or retried).</summary>
    internal bool Idle
    {
        get
        {
            lock (_lock) return _queued == 0 && _posting == 0;
        }
    }

    /// <summary>Gatherings this queue ended because a batch's worth was waiting, and because the delay ran out.</summary>
    internal (long Full, long Delay) GatheringsEnded
    {
        get
        {
            lock (_lock) return (_endedFull, _endedByDelay);
        }
    }

    private long _endedFull;
    private long _endedByDelay;

    private int Queued
    {
        get
        {
            lock (_lock) return _queued;
        }
    }

    /// <summary>
    /// Posts <paramref name="call"/> soon, after the caller's response; when the queue (or the merchant's share of it) is
    /// full, posts it now, so a flood slows its own responses instead of losing or endlessly delaying postings.
    /// </summary>
    public async Task PostAsync(ForwardCallRecord call)
    {
        if (TryEnqueue(call)) return;
        await billing.SettleAsync(call, CancellationToken.None);
    }

    internal bool TryEnqueue(ForwardCallRecord call)
    {
        lock (_lock)
        {
            if (_queued >= MaxQueued) return false;
            if (!_byMerchant.TryGetValue(call.MerchantId, out var calls))
            {
                calls = new Queue<ForwardCallRecord>();
                _byMerchant[call.MerchantId] = calls;
                _turns.Enqueue(call.MerchantId);
            }
            else if (calls.Count >= MaxQueuedPerMerchant)
            {
                return false;
            }
            calls.Enqueue(call);
            _queued++;
            if (_queued >= MaxBatch) _full.Writer.TryWrite(true);
        }
        _wake.Writer.TryWrite(true);
        return true;
    }

    /// <summary>Up to <see cref="MaxBatch"/> calls, one merchant's at a time in turn.</summary>
    internal List<ForwardCallRecord> TakeBatch()
    {
        var batch = new List<ForwardCallRecord>(MaxBatch);
        lock (_lock)
        {
            while (batch.Count < MaxBatch && _turns.TryDequeue(out var merchantId))
            {
                var calls = _byMerchant[merchantId];
                batch.Add(calls.Dequeue());
                if (calls.Count > 0) _turns.Enqueue(merchantId);
                else _byMerchant.Remove(merchantId);
            }
            _queued -= batch.Count;
            _posting += batch.Count;
        }
        return batch;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (true)
        {
            try
            {
                await _wake.Reader.ReadAsync(stoppingToken);
                // The calls served meanwhile join this one's posting (ForwardOptions.PostingDelay): one transaction, planned
                // once, for all of them. A batch already full, or filled meanwhile, goes at once.
                if (options.PostingDelay > TimeSpan.Zero) await GatherAsync(stoppingToken);
                else LavaMetrics.GatewayPostingGathered("none");
            }
            catch (OperationCanceledException)
            {
                // Stopping: what is still queued is posted now (the host's shutdown timeout bounds it); anything the
                // process does not get to is posted by the settle worker after its lease.
                await DrainAsync();
                return;
            }
            await DrainAsync();
        }
    }

    /// <summary>Waits the posting delay, or until a whole batch is queued, whichever comes first.</summary>
    private async Task GatherAsync(CancellationToken stoppingToken)
    {
        // A signal left from a batch already taken says nothing about this one; cleared before the count is looked at,
        // so a batch filling from here on signals again.
        _full.Reader.TryRead(out _);
        if (Queued >= MaxBatch)
        {
            Ended(full: true);
            return;
        }
        using var delay = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        delay.CancelAfter(options.PostingDelay);
        try
        {
            await _full.Reader.ReadAsync(delay.Token);
            Ended(full: true);
        }
        catch (OperationCanceledException) when (!stoppingToken.IsCancellationRequested)
        {
            // The delay ran out first: post what was gathered.
            Ended(full: false);
        }
    }

    private void Ended(bool full)
    {
        lock (_lock)
        {
            if (full) _endedFull++;
            else _endedByDelay++;
        }
        LavaMetrics.GatewayPostingGathered(full ? "full" : "delay");
    }

    private async Task DrainAsync()
    {
        while (TakeBatch() is { Count: > 0 } batch)
        {
            try
            {
                // Not cancelled by shutdown: a posting cut short is only retried later, never lost.
                await billing.SettleManyAsync(batch, CancellationToken.None);
            }
            catch (Exception e)
            {
                // SettleManyAsync leaves each call to the settle worker itself; this is a bug, and the worker is the backstop.
                log.LogError("Posting {Count} gateway calls failed ({Failure}); the settle worker posts them", batch.Count, e.GetType().Name);
            }
            finally
            {
                lock (_lock) _posting -= batch.Count;
            }
        }
    }
}
