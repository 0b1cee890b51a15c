namespace Lava.Billing.Forward;

/// <summary>
/// The upstream URL of a gateway call, read from the raw query string. The SDK sends it two ways: fully
/// percent-encoded (<c>gateway()</c>: <c>?u=https%3A%2F%2Fapi.openai.com%2Fv1%2Fchat%2Fcompletions</c>) or raw with a
/// path (and maybe a query) appended (<c>providers.openai + "/chat/completions"</c>), so everything after <c>u=</c>
/// is the URL, including any <c>&amp;</c> that belongs to the upstream's own query.
/// </summary>
public static class ForwardTarget
{
    private const int MaxUrlChars = 8192;

    public static bool TryParse(string? rawQuery, out Uri? upstream, out string? error)
    {
        upstream = null;
        var query = rawQuery is ['?', .. var rest] ? rest : rawQuery ?? "";
        var at = query.StartsWith("u=", StringComparison.Ordinal) ? 2 : query.IndexOf("&u=", StringComparison.Ordinal) is >= 0 and var i ? i + 3 : -1;
        if (at < 0)
        {
            error = "The query parameter u (the upstream URL) is required.";
            return false;
        }
        var value = query[at..];
        if (value.Length is 0 or > MaxUrlChars)
        {
            error = $"u must be an absolute https URL of at most {MaxUrlChars} characters.";
            return false;
        }
        if (value.StartsWith("http%3A", StringComparison.OrdinalIgnoreCase) || value.StartsWith("https%3A", StringComparison.OrdinalIgnoreCase))
            value = Uri.UnescapeDataString(value);
        else if (!value.StartsWith("http://", StringComparison.OrdinalIgnoreCase) && !value.StartsWith("https://", StringComparison.OrdinalIgnoreCase))
        {
            error = "u must be an absolute http(s) URL.";
            return false;
        }
        if (!Uri.TryCreate(value, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") || uri.UserInfo.Length > 0)
        {
            error = "u must be an absolute http(s) URL without credentials.";
            return false;
        }
        // Encoded dots and slashes would let a path leave the allowed prefix on a server that decodes them.
        var path = uri.AbsolutePath;
        if (path.Contains("%2e", StringComparison.OrdinalIgnoreCase) || path.Contains("%2f", StringComparison.OrdinalIgnoreCase) ||
            path.Contains("%5c", StringComparison.OrdinalIgnoreCase) || path.Split('/').Any(s => s is "." or ".."))
        {
            error = "u must not contain encoded slashes or dot segments.";
            return false;
        }
        upstream = uri.Fragment.Length > 0 ? new UriBuilder(uri) { Fragment = "" }.Uri : uri;
        error = null;
        return true;
    }
}

/// <summary>One allow-list entry: scheme, host and port must equal the upstream's, and its path must be a prefix by segments.</summary>
public sealed record AllowedUpstream(string Scheme, string Host, int Port, string Path)
{
    public static AllowedUpstream Parse(string entry)
    {
        if (!Uri.TryCreate(entry.Trim(), UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https") ||
            uri.UserInfo.Length > 0 || uri.Query.Length > 0)
            throw new InvalidOperationException($"Forward:AllowedUpstreams: '{entry}' is not an http(s) base URL without query or credentials.");
        return new AllowedUpstream(uri.Scheme, uri.IdnHost, uri.Port, uri.AbsolutePath.TrimEnd('/'));
    }

    public bool Allows(Uri upstream) =>
        upstream.Scheme == Scheme &&
        string.Equals(upstream.IdnHost, Host, StringComparison.OrdinalIgnoreCase) &&
        upstream.Port == Port &&
        (Path.Length == 0 || upstream.AbsolutePath == Path || upstream.AbsolutePath.StartsWith(Path + "/", StringComparison.Ordinal));

    public override string ToString() => $"{Scheme}://{Host}:{Port}{Path}";
}
