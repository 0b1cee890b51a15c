using System.Text.Json;
using Lava.Billing.Translation;

namespace Lava.Billing.Forward;

/// <summary>
/// Reads usage from a server-sent event stream as it passes through, chunk by chunk, event by event (<see cref="SseEventReader"/>).
/// Which events carry usage: OpenAI chat, the final chunk with <c>usage</c> (what <c>stream_options.include_usage</c>
/// asks for); Responses, <c>response.completed</c> (or <c>.incomplete</c>/<c>.failed</c>); Anthropic,
/// <c>message_start</c> (input and cache) then the last <c>message_delta</c> (cumulative output); Gemini, the last
/// chunk's <c>usageMetadata</c>. It also counts the characters of generated text, the basis of an estimate when
/// a stream is cut before its usage arrives.
/// </summary>
public sealed class SseUsageReader(ApiFormat format)
{
    private readonly SseEventReader _events = new();
    private NormalizedUsage? _anthropicStart;

    /// <summary>The best usage seen so far (for Anthropic, the start's input with the latest output).</summary>
    public NormalizedUsage? Usage { get; private set; }

    /// <summary>True once the event that carries the final usage was seen.</summary>
    public bool Complete { get; private set; }

    /// <summary>Characters of generated text (and reasoning) seen in the deltas.</summary>
    public long OutputCharacters { get; private set; }

    public void Feed(ReadOnlySpan<byte> chunk)
    {
        while (_events.TryRead(ref chunk, out var e))
        {
            if (e.IsDone) continue;
            try
            {
                using var document = JsonDocument.Parse(e.Data);
                OnEvent(document.RootElement);
            }
            catch (JsonException)
            {
                // Not JSON (a keep-alive, a provider's own text event): nothing to read.
            }
        }
    }

    private void OnEvent(JsonElement e)
    {
        switch (format)
        {
            case ApiFormat.OpenAiChat:
                if (UsageJson.Member(e, "usage") is { ValueKind: JsonValueKind.Object } usage)
                {
                    Usage = UsageJson.OpenAiChat(usage);
                    Complete = true;
                }
                if (UsageJson.Member(e, "choices") is { ValueKind: JsonValueKind.Array } choices)
                {
                    foreach (var choice in choices.EnumerateArray())
                    {
                        if (UsageJson.Member(choice, "delta") is not { } delta) continue;
                        CountText(delta, "content");
                        CountText(delta, "reasoning_content");
                        CountText(delta, "reasoning");
                    }
                }
                break;
            case ApiFormat.OpenAiResponses:
                var type = UsageJson.Member(e, "type")?.GetString();
                if (type is "response.completed" or "response.incomplete" or "response.failed" &&
                    UsageJson.Member(e, "response") is { } response && UsageJson.Member(response, "usage") is { } responseUsage)
                {
                    Usage = UsageJson.OpenAiResponses(responseUsage);
                    Complete = true;
                }
                else if (type is not null && type.EndsWith(".delta", StringComparison.Ordinal) && type.Contains("text", StringComparison.Ordinal))
                    CountText(e, "delta");
                break;
            case ApiFormat.AnthropicMessages:
                switch (UsageJson.Member(e, "type")?.GetString())
                {
                    case "message_start" when UsageJson.Member(e, "message") is { } message && UsageJson.Member(message, "usage") is { } start:
                        _anthropicStart = UsageJson.Anthropic(start);
                        Usage = _anthropicStart;
                        break;
                    case "message_delta" when UsageJson.Member(e, "usage") is { } delta:
                        // message_delta counts are cumulative; input and cache counts appear there only when they changed.
                        var before = _anthropicStart ?? NormalizedUsage.None;
                        Usage = new NormalizedUsage(
                            UsageJson.Member(delta, "input_tokens") is not null ? UsageJson.Count(delta, "input_tokens") : before.InputUncached,
                            UsageJson.Member(delta, "cache_read_input_tokens") is not null ? UsageJson.Count(delta, "cache_read_input_tokens") : before.CacheRead,
                            UsageJson.Member(delta, "cache_creation_input_tokens") is not null ? UsageJson.Count(delta, "cache_creation_input_tokens") : before.CacheWrite,
                            UsageJson.Count(delta, "output_tokens"));
                        Complete = true;
                        break;
                    case "content_block_delta" when UsageJson.Member(e, "delta") is { } textDelta:
                        CountText(textDelta, "text");
                        CountText(textDelta, "thinking");
                        break;
                }
                break;
            case ApiFormat.GeminiGenerateContent:
                if (UsageJson.Member(e, "usageMetadata") is { } metadata) Usage = UsageJson.Gemini(metadata);
                if (UsageJson.Member(e, "candidates") is { ValueKind: JsonValueKind.Array } candidates)
                {
                    foreach (var candidate in candidates.EnumerateArray())
                    {
                        if (UsageJson.Member(candidate, "finishReason") is not null && Usage is not null) Complete = true;
                        if (UsageJson.Member(candidate, "content") is { } content && UsageJson.Member(content, "parts") is { ValueKind: JsonValueKind.Array } parts)
                            foreach (var part in parts.EnumerateArray()) CountText(part, "text");
                    }
                }
                break;
        }
    }

    private void CountText(JsonElement element, string name)
    {
        if (UsageJson.Member(element, name) is { ValueKind: JsonValueKind.String } text) OutputCharacters += text.GetString()!.Length;
    }
}
