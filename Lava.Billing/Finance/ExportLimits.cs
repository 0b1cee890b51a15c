using System.Collections.Concurrent;
using Lava.Billing.Infrastructure.Database;
using Lava.Billing.Infrastructure.Http;
using Microsoft.Extensions.Options;

namespace Lava.Billing.Finance;

/// <summary>
/// What every streamed read (exports, statements) is held to, besides its own connection pool
/// (<see cref="ReadDataSource.Exports"/>): a secret key runs at most <see cref="ExportOptions.MaxPerKey"/> at once and a
/// merchant, all its keys together, <see cref="ExportOptions.PerMerchantLimit"/> (429 with Retry-After beyond), so no
/// merchant holds the whole pool; and a client that takes none of the bytes for <see cref="ExportOptions.StallSeconds"/>
/// has its export aborted, its query cancelled and its connection returned.
/// </summary>
public sealed class ExportLimits(IOptions<ExportOptions> options, ILogger<ExportLimits> log)
{
    public const int RetryAfterSeconds = 5;

    private readonly ConcurrentDictionary<string, int> _perKey = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int> _perMerchant = new(StringComparer.Ordinal);

    /// <summary>Runs <paramref name="export"/> with a token that a stalled client or a gone one cancels.</summary>
    public async Task RunAsync(HttpContext http, Func<CancellationToken, Task> export)
    {
        var caller = http.Items[Caller.ItemKey] as Caller;
        var (key, merchant) = (caller?.SecretKeyId ?? "", caller?.MerchantId ?? "");
        if (!TryEnter(_perKey, key, options.Value.MaxPerKey))
        {
            await Problems.TooManyExports("This key", options.Value.MaxPerKey, RetryAfterSeconds).ExecuteAsync(http);
            return;
        }
        if (!TryEnter(_perMerchant, merchant, options.Value.PerMerchantLimit))
        {
            Exit(_perKey, key);
            await Problems.TooManyExports("This merchant", options.Value.PerMerchantLimit, RetryAfterSeconds).ExecuteAsync(http);
            return;
        }
        // Streamed on the export pool, for as long as its client reads: it gives back its merchant's turn of the
        // service's pool (MerchantLimits), which it does not use.
        MerchantLimits.Leave(http);
        using var stalled = CancellationTokenSource.CreateLinkedTokenSource(http.RequestAborted);
        var body = http.Response.Body;
        http.Response.Body = new StallLimitedStream(body, TimeSpan.FromSeconds(options.Value.StallSeconds), stalled);
        try
        {
            await export(stalled.Token);
        }
        catch (Exception e) when (e is OperationCanceledException or IOException && stalled.IsCancellationRequested &&
                                  !http.RequestAborted.IsCancellationRequested)
        {
            log.LogInformation("{Path}: export aborted, its client took no bytes for {StallSeconds} s", http.Request.Path, options.Value.StallSeconds);
            http.Abort();
        }
        finally
        {
            http.Response.Body = body;
            Exit(_perMerchant, merchant);
            Exit(_perKey, key);
        }
    }

    private static bool TryEnter(ConcurrentDictionary<string, int> running, string who, int limit)
    {
        while (true)
        {
            var now = running.GetOrAdd(who, 0);
            if (now >= limit) return false;
            if (running.TryUpdate(who, now + 1, now)) return true;
        }
    }

    private static void Exit(ConcurrentDictionary<string, int> running, string who)
    {
        while (true)
        {
            var now = running[who];
            if (now == 1 ? running.TryRemove(new KeyValuePair<string, int>(who, 1)) : running.TryUpdate(who, now - 1, now)) return;
        }
    }

    /// <summary>Each write and flush must complete within the limit, or the export's token is cancelled.</summary>
    private sealed class StallLimitedStream(Stream inner, TimeSpan limit, CancellationTokenSource export) : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
            WriteAsync(buffer.AsMemory(offset, count), ct).AsTask();

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken ct = default)
        {
            using var both = CancellationTokenSource.CreateLinkedTokenSource(ct, export.Token);
            export.CancelAfter(limit);
            await inner.WriteAsync(buffer, both.Token);
            export.CancelAfter(Timeout.InfiniteTimeSpan);
        }

        public override async Task FlushAsync(CancellationToken ct)
        {
            using var both = CancellationTokenSource.CreateLinkedTokenSource(ct, export.Token);
            export.CancelAfter(limit);
            await inner.FlushAsync(both.Token);
            export.CancelAfter(Timeout.InfiniteTimeSpan);
        }
    }
}
