using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using StandardWebhooks;

namespace Lava.Billing.Webhooks;

/// <summary>What one attempt came to: a response status, or the error that stood in for one.</summary>
public sealed record AttemptResult(int? StatusCode, TimeSpan? RetryAfter, string? Error)
{
    public bool Delivered => StatusCode is >= 200 and < 300;
}

/// <summary>
/// Sends one delivery, signed two ways: Lava's <c>X-Webhook-Signature</c> (hex HMAC-SHA256 of the body, keyed by
/// the secret's text) and Standard Webhooks' <c>webhook-id</c>, <c>webhook-timestamp</c> and <c>webhook-signature</c>.
/// During a secret's overlap both secrets sign: Standard Webhooks lists both signatures, and the previous secret's
/// Lava signature goes in <c>X-Webhook-Signature-Previous</c>.
/// </summary>
public sealed class WebhookSender : IDisposable
{
    private readonly HttpClient _http;
    private readonly WebhookOptions _options;
    private readonly TimeProvider _clock;

    public WebhookSender(WebhookOptions options, TimeProvider clock)
    {
        _options = options;
        _clock = clock;
        var handler = new SocketsHttpHandler
        {
            AllowAutoRedirect = false,
            UseCookies = false,
            PooledConnectionLifetime = TimeSpan.FromMinutes(2),
            ConnectTimeout = TimeSpan.FromMilliseconds(options.AttemptTimeoutMs),
            ConnectCallback = ConnectAsync,
        };
        _http = new HttpClient(handler) { Timeout = Timeout.InfiniteTimeSpan };
    }

    // The address is checked after DNS resolution, at every connection: a name that resolves to the service's own
    // network is refused however it was registered.
    private async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken ct)
    {
        var addresses = await Dns.GetHostAddressesAsync(context.DnsEndPoint.Host, ct);
        var allowed = _options.AllowPrivateAddresses ? addresses : addresses.Where(WebhookUrls.IsPublic).ToArray();
        if (allowed.Length == 0) throw new HttpRequestException($"{context.DnsEndPoint.Host} resolves to no public address");
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(allowed, context.DnsEndPoint.Port, ct);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    public static string LavaSignature(string secret, byte[] body) =>
        Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), body));

    public async Task<AttemptResult> SendAsync(string url, string eventId, string payload, string secret, string? previousSecret,
        CancellationToken ct)
    {
        var body = Encoding.UTF8.GetBytes(payload);
        var timestamp = _clock.GetUtcNow();
        using var request = new HttpRequestMessage(HttpMethod.Post, url) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        request.Headers.UserAgent.ParseAdd("LavaBilling-Webhooks/1");
        request.Headers.TryAddWithoutValidation("X-Webhook-Signature", LavaSignature(secret, body));
        var signatures = new StandardWebhook(secret).Sign(eventId, timestamp, payload);
        if (previousSecret is not null)
        {
            request.Headers.TryAddWithoutValidation("X-Webhook-Signature-Previous", LavaSignature(previousSecret, body));
            signatures += " " + new StandardWebhook(previousSecret).Sign(eventId, timestamp, payload);
        }
        request.Headers.TryAddWithoutValidation("webhook-id", eventId);
        request.Headers.TryAddWithoutValidation("webhook-timestamp", timestamp.ToUnixTimeSeconds().ToString(System.Globalization.CultureInfo.InvariantCulture));
        request.Headers.TryAddWithoutValidation("webhook-signature", signatures);

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(ct);
        timeout.CancelAfter(_options.AttemptTimeoutMs);
        try
        {
            using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, timeout.Token);
            return new AttemptResult((int)response.StatusCode, RetryAfter(response), null);
        }
        catch (OperationCanceledException) when (!ct.IsCancellationRequested)
        {
            return new AttemptResult(null, null, $"no response within {_options.AttemptTimeoutMs} ms");
        }
        catch (HttpRequestException e)
        {
            return new AttemptResult(null, null, e.Message);
        }
    }

    private TimeSpan? RetryAfter(HttpResponseMessage response)
    {
        var header = response.Headers.RetryAfter;
        var wait = header?.Delta ?? (header?.Date is { } date ? date - _clock.GetUtcNow() : null);
        return wait is { } w ? TimeSpan.FromTicks(Math.Clamp(w.Ticks, 0, TimeSpan.FromSeconds(_options.MaxRetryAfterSeconds).Ticks)) : null;
    }

    public void Dispose() => _http.Dispose();
}
