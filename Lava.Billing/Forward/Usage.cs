namespace Lava.Billing.Forward;

/// <summary>
/// What one provider call used, in one shape for every provider. The four token counts are disjoint, so summing them
/// never counts a cached or reasoning token twice: <see cref="Output"/> includes reasoning, and the input is split
/// into tokens read at full price, read from a cache, and written to a cache.
/// </summary>
public readonly record struct NormalizedUsage(
    long InputUncached,
    long CacheRead,
    long CacheWrite,
    long Output,
    long InputCharacters = 0,
    decimal InputSeconds = 0)
{
    public static readonly NormalizedUsage None = new(0, 0, 0, 0);

    /// <summary>Every input token, whatever it cost: what a report's <c>input_tokens</c> carries.</summary>
    public long InputTokens => checked(InputUncached + CacheRead + CacheWrite);
}

/// <summary>The wire format of an upstream endpoint, which decides where its usage is and what its numbers mean.</summary>
public enum ApiFormat
{
    /// <summary>OpenAI chat completions, completions and embeddings, and every OpenAI-compatible provider (Mistral, Groq, …).</summary>
    OpenAiChat,
    OpenAiResponses,
    AnthropicMessages,
    GeminiGenerateContent,
    /// <summary>Text to speech: billed by the characters of the request's <c>input</c>.</summary>
    Speech,
    /// <summary>Transcription and translation: billed by audio seconds (or tokens, for token-priced models).</summary>
    Transcription,
    /// <summary>Anything else (model lists, files, …): forwarded, no usage read.</summary>
    Other,
}

public static class ApiFormats
{
    public static ApiFormat Detect(Uri upstream)
    {
        var path = upstream.AbsolutePath;
        if (path.Contains(":generateContent", StringComparison.Ordinal) || path.Contains(":streamGenerateContent", StringComparison.Ordinal))
            return ApiFormat.GeminiGenerateContent;
        if (path.EndsWith("/chat/completions", StringComparison.Ordinal) || path.EndsWith("/completions", StringComparison.Ordinal) ||
            path.EndsWith("/embeddings", StringComparison.Ordinal))
            return ApiFormat.OpenAiChat;
        if (path.EndsWith("/responses", StringComparison.Ordinal)) return ApiFormat.OpenAiResponses;
        // OpenAI's assistants also end in /messages (threads/{id}/messages); they report no usage there.
        if (path.EndsWith("/messages", StringComparison.Ordinal) && !path.Contains("/threads/", StringComparison.Ordinal))
            return ApiFormat.AnthropicMessages;
        if (path.EndsWith("/audio/speech", StringComparison.Ordinal)) return ApiFormat.Speech;
        if (path.EndsWith("/audio/transcriptions", StringComparison.Ordinal) || path.EndsWith("/audio/translations", StringComparison.Ordinal))
            return ApiFormat.Transcription;
        return ApiFormat.Other;
    }

    /// <summary>Formats whose successful response always carries usage: one without it is billed from an estimate.</summary>
    public static bool ReportsUsage(ApiFormat format) => format is ApiFormat.OpenAiChat or ApiFormat.OpenAiResponses
        or ApiFormat.AnthropicMessages or ApiFormat.GeminiGenerateContent or ApiFormat.Transcription;
}

/// <summary>How the provider wants its key: Anthropic and Gemini's native API have their own headers, the rest take a bearer.</summary>
public enum ProviderKeyStyle { Bearer, AnthropicApiKey, GoogleApiKey }

public static class ProviderKeyStyles
{
    public static ProviderKeyStyle For(Uri upstream, ApiFormat format)
    {
        var host = upstream.IdnHost;
        if (host.Equals("api.anthropic.com", StringComparison.OrdinalIgnoreCase) || format == ApiFormat.AnthropicMessages)
            return ProviderKeyStyle.AnthropicApiKey;
        // Gemini's OpenAI-compatible endpoints under /openai take a bearer like every other compatible API.
        var googleNative = host.Equals("generativelanguage.googleapis.com", StringComparison.OrdinalIgnoreCase) &&
                           !upstream.AbsolutePath.Contains("/openai/", StringComparison.Ordinal);
        return googleNative || format == ApiFormat.GeminiGenerateContent ? ProviderKeyStyle.GoogleApiKey : ProviderKeyStyle.Bearer;
    }
}
