namespace Lava.Billing.Infrastructure.Http;

/// <summary>
/// Caps every request body (default 1 MiB, <c>Limits:MaxRequestBodyBytes</c>). Kestrel enforces it on the socket;
/// this also covers hosts without that feature (the test server) and answers a declared oversize body at once.
/// </summary>
public static class BodyLimit
{
    public const long DefaultBytes = 1024 * 1024;
    private const string ItemKey = "lava.body_limit";

    public static long Bytes(HttpContext context) =>
        context.Items.TryGetValue(ItemKey, out var v) && v is long l ? l : DefaultBytes;

    public static IApplicationBuilder UseLavaBodyLimit(this IApplicationBuilder app, long defaultBytes) =>
        app.Use(async (context, next) =>
        {
            var limit = context.GetEndpoint()?.Metadata.GetMetadata<BodyLimitMetadata>()?.Bytes ?? defaultBytes;
            context.Items[ItemKey] = limit;
            var feature = context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>();
            if (feature is { IsReadOnly: false }) feature.MaxRequestBodySize = limit;
            if (context.Request.ContentLength > limit)
            {
                await Problems.PayloadTooLarge(limit).ExecuteAsync(context);
                return;
            }
            if (feature is null) context.Request.Body = new LimitedStream(context.Request.Body, limit);
            await next(context);
        });

    /// <summary>Endpoint metadata that raises or lowers the limit for one route.</summary>
    public sealed record BodyLimitMetadata(long Bytes);

    public static TBuilder WithBodyLimit<TBuilder>(this TBuilder builder, long bytes) where TBuilder : IEndpointConventionBuilder =>
        builder.WithMetadata(new BodyLimitMetadata(bytes));

    private sealed class LimitedStream(Stream inner, long limit) : Stream
    {
        private long _read;
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => _read; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => Count(inner.Read(buffer, offset, count));
        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default) =>
            Count(await inner.ReadAsync(buffer, ct));
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken ct) =>
            ReadAsync(buffer.AsMemory(offset, count), ct).AsTask();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        private int Count(int n)
        {
            _read += n;
            if (_read > limit) throw new BadHttpRequestException("Request body too large.", 413);
            return n;
        }
    }
}
