using System.Text.Json;

namespace Lava.Billing.Forward;

/// <summary>
/// Reads a provider's usage object into <see cref="NormalizedUsage"/>. Pure. What each provider's numbers mean:
/// <list type="bullet">
/// <item>OpenAI chat (and compatible): <c>prompt_tokens</c> includes <c>prompt_tokens_details.cached_tokens</c>
/// (DeepSeek: <c>prompt_cache_hit_tokens</c>); <c>completion_tokens</c> includes reasoning.</item>
/// <item>OpenAI Responses: <c>input_tokens</c> includes <c>input_tokens_details.cached_tokens</c>; <c>output_tokens</c>
/// includes <c>output_tokens_details.reasoning_tokens</c>.</item>
/// <item>Anthropic: <c>input_tokens</c> excludes <c>cache_read_input_tokens</c> and <c>cache_creation_input_tokens</c>.</item>
/// <item>Gemini: <c>promptTokenCount</c> includes <c>cachedContentTokenCount</c>; <c>thoughtsTokenCount</c> and
/// <c>toolUsePromptTokenCount</c> are separate from <c>candidatesTokenCount</c> and <c>promptTokenCount</c>.</item>
/// </list>
/// </summary>
public static class UsageJson
{
    /// <summary>The usage in a complete (non-streamed) response body, or null when it carries none.</summary>
    public static NormalizedUsage? FromResponse(ApiFormat format, JsonElement root) => format switch
    {
        ApiFormat.OpenAiChat => Member(root, "usage") is { } u ? OpenAiChat(u) : null,
        ApiFormat.OpenAiResponses => Member(root, "usage") is { } u ? OpenAiResponses(u) : null,
        ApiFormat.AnthropicMessages => Member(root, "usage") is { } u ? Anthropic(u) : null,
        // streamGenerateContent without alt=sse answers a JSON array of chunks: the last usage is the total.
        ApiFormat.GeminiGenerateContent => root.ValueKind == JsonValueKind.Array
            ? root.EnumerateArray().Select(c => Member(c, "usageMetadata")).LastOrDefault(m => m is not null) is { } last ? Gemini(last) : null
            : Member(root, "usageMetadata") is { } m ? Gemini(m) : null,
        ApiFormat.Transcription => Transcription(root),
        _ => null,
    };

    public static NormalizedUsage OpenAiChat(JsonElement usage)
    {
        var prompt = Count(usage, "prompt_tokens");
        var cached = Member(usage, "prompt_tokens_details") is { } details ? Count(details, "cached_tokens") : Count(usage, "prompt_cache_hit_tokens");
        cached = Math.Min(cached, prompt);
        return new NormalizedUsage(prompt - cached, cached, 0, Count(usage, "completion_tokens"));
    }

    public static NormalizedUsage OpenAiResponses(JsonElement usage)
    {
        var input = Count(usage, "input_tokens");
        var cached = Math.Min(Member(usage, "input_tokens_details") is { } details ? Count(details, "cached_tokens") : 0, input);
        return new NormalizedUsage(input - cached, cached, 0, Count(usage, "output_tokens"));
    }

    public static NormalizedUsage Anthropic(JsonElement usage) => new(
        Count(usage, "input_tokens"), Count(usage, "cache_read_input_tokens"), Count(usage, "cache_creation_input_tokens"),
        Count(usage, "output_tokens"));

    public static NormalizedUsage Gemini(JsonElement metadata)
    {
        var prompt = Count(metadata, "promptTokenCount");
        var cached = Math.Min(Count(metadata, "cachedContentTokenCount"), prompt);
        return new NormalizedUsage(prompt - cached + Count(metadata, "toolUsePromptTokenCount"), cached, 0,
            Count(metadata, "candidatesTokenCount") + Count(metadata, "thoughtsTokenCount"));
    }

    /// <summary>
    /// Whisper-style models report audio seconds (<c>usage: {type: "duration", seconds}</c>, or <c>duration</c> in
    /// verbose JSON); token-priced ones report <c>usage: {type: "tokens", input_tokens, output_tokens}</c>.
    /// </summary>
    public static NormalizedUsage? Transcription(JsonElement root)
    {
        var usage = Member(root, "usage");
        decimal? seconds = usage is { } u && Member(u, "seconds") is { } s ? Seconds(s)
            : Member(root, "duration") is { } d ? Seconds(d) : null;
        if (usage is { } tokens && Member(tokens, "input_tokens") is not null)
            return new NormalizedUsage(Count(tokens, "input_tokens"), 0, 0, Count(tokens, "output_tokens"), 0, seconds ?? 0);
        return seconds is { } sec ? NormalizedUsage.None with { InputSeconds = sec } : null;
    }

    internal static JsonElement? Member(JsonElement element, string name) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    /// <summary>
    /// A token count: a non-negative integer; missing, null, junk or negative is zero. A count past the report limits
    /// (however large, even beyond a long) saturates at <see cref="UsageBounds.Ceiling"/>, so the sums built from it
    /// cannot wrap and <see cref="UsageBounds"/> sees it is out of range.
    /// </summary>
    internal static long Count(JsonElement element, string name)
    {
        if (Member(element, name) is not { ValueKind: JsonValueKind.Number } n) return 0;
        if (n.TryGetInt64(out var v)) return Math.Clamp(v, 0, UsageBounds.Ceiling);
        if (n.TryGetDecimal(out var d)) return d <= 0 ? 0 : d >= UsageBounds.Ceiling ? UsageBounds.Ceiling : (long)decimal.Truncate(d);
        // Too large even for a decimal: only its sign matters.
        return n.GetRawText().StartsWith('-') ? 0 : UsageBounds.Ceiling;
    }

    // Audio seconds arrive as floats; they are kept to the microsecond, the precision a report accepts.
    private static decimal? Seconds(JsonElement value) =>
        value.ValueKind == JsonValueKind.Number && value.TryGetDecimal(out var s) && s >= 0 ? decimal.Round(s, 6, MidpointRounding.AwayFromZero) : null;
}
