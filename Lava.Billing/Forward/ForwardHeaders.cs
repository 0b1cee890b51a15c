using System.Net.Http.Headers;
using Microsoft.Extensions.Primitives;

namespace Lava.Billing.Forward;

/// <summary>
/// Which headers cross the gateway. Provider headers (<c>anthropic-version</c>, <c>openai-beta</c>, …) pass both ways;
/// hop-by-hop headers (RFC 9110 §7.6.1, and any the Connection header names) never do; our own credentials and
/// <c>x-lava-*</c> headers stay here. Host and Content-Length are the outgoing client's to compute.
/// </summary>
public static class ForwardHeaders
{
    private static readonly HashSet<string> HopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Transfer-Encoding", "TE", "Trailer", "Upgrade", "Proxy-Connection",
        "Proxy-Authenticate", "Proxy-Authorization",
    };

    // Accept-Encoding is the handler's: it asks for compression and decompresses, so usage can be read from the body.
    private static readonly HashSet<string> NotForwarded = new(StringComparer.OrdinalIgnoreCase)
    {
        "Host", "Content-Length", "Authorization", "Accept-Encoding", "Expect",
    };

    /// <summary>The longest provider key accepted; real ones are a few hundred characters at most.</summary>
    public const int MaxProviderKeyChars = 4096;

    /// <summary>
    /// Whether a value built from input may go into a header as it is: 1 to <paramref name="maxChars"/> visible ASCII
    /// characters. Control characters (CR and LF above all) would split the header; spaces have no place in a key.
    /// </summary>
    public static bool IsValidValue(string value, int maxChars) =>
        value.Length >= 1 && value.Length <= maxChars && value.All(c => c is > ' ' and <= '~');

    public static void CopyRequest(IHeaderDictionary incoming, HttpRequestMessage outgoing)
    {
        var named = ConnectionListed(incoming.Connection);
        foreach (var (name, values) in incoming)
        {
            if (HopByHop.Contains(name) || NotForwarded.Contains(name) || named.Contains(name) ||
                name.StartsWith("Proxy-", StringComparison.OrdinalIgnoreCase) ||
                name.StartsWith("x-lava-", StringComparison.OrdinalIgnoreCase) || name.StartsWith(':'))
                continue;
            if (!outgoing.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values))
                outgoing.Content?.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
        }
    }

    /// <summary>Puts the provider key where this provider reads it, replacing whatever the caller sent there.</summary>
    public static void SetProviderKey(HttpRequestMessage outgoing, string? key, ProviderKeyStyle style)
    {
        if (key is null) return;
        switch (style)
        {
            case ProviderKeyStyle.AnthropicApiKey:
                outgoing.Headers.Remove("x-api-key");
                outgoing.Headers.TryAddWithoutValidation("x-api-key", key);
                break;
            case ProviderKeyStyle.GoogleApiKey:
                outgoing.Headers.Remove("x-goog-api-key");
                outgoing.Headers.TryAddWithoutValidation("x-goog-api-key", key);
                break;
            default:
                outgoing.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
                break;
        }
    }

    public static void CopyResponse(HttpResponseMessage upstream, HttpResponse response)
    {
        var named = ConnectionListed(upstream.Headers.TryGetValues("Connection", out var c) ? new StringValues(c.ToArray()) : default);
        foreach (var (name, values) in upstream.Headers.Concat(upstream.Content.Headers))
        {
            // Alt-Svc describes the provider's own origin; repeated here it would point clients at ports we never opened.
            // A value our server could not send (non-ASCII, control characters) is dropped rather than failing the answer.
            if (HopByHop.Contains(name) || named.Contains(name) || name.Equals("Alt-Svc", StringComparison.OrdinalIgnoreCase) ||
                name.StartsWith("Proxy-", StringComparison.OrdinalIgnoreCase) || !values.All(Relayable))
                continue;
            response.Headers[name] = values.ToArray();
        }
    }

    private static bool Relayable(string value) => value.All(c => c is '\t' or (>= ' ' and <= '~'));

    private static HashSet<string> ConnectionListed(StringValues connection)
    {
        var named = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        foreach (var value in connection)
            foreach (var token in (value ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                named.Add(token);
        return named;
    }
}
