using System.Text.Json.Nodes;
using static Lava.Billing.Translation.JsonNodes;

namespace Lava.Billing.Translation;

/// <summary>OpenAI Chat Completions answers rewritten in Anthropic's Messages shape, for a client that speaks Anthropic. Pure.</summary>
public static class AnthropicAnswers
{
    /// <summary>The first choice of a <c>chat.completion</c> becomes a <c>message</c> (Anthropic answers one).</summary>
    public static JsonObject FromOpenAi(JsonObject completion)
    {
        var choice = Array(completion, "choices") is [JsonObject first, ..] ? first : null;
        var reply = Object(choice, "message");
        var content = new JsonArray();
        var text = reply?["content"] is { } c ? TextOrParts(c) : null;
        if (!string.IsNullOrEmpty(text)) content.Add(new JsonObject { ["type"] = "text", ["text"] = text });
        if (String(reply, "refusal") is { Length: > 0 } refusal) content.Add(new JsonObject { ["type"] = "text", ["text"] = refusal });
        foreach (var call in Array(reply, "tool_calls") ?? [])
        {
            var function = Object(call, "function");
            content.Add(new JsonObject
            {
                ["type"] = "tool_use",
                ["id"] = String(call, "id"),
                ["name"] = String(function, "name"),
                ["input"] = Arguments(String(function, "arguments")),
            });
        }
        return new JsonObject
        {
            ["id"] = String(completion, "id"),
            ["type"] = "message",
            ["role"] = "assistant",
            ["model"] = String(completion, "model"),
            ["content"] = content,
            ["stop_reason"] = StopReason(String(choice, "finish_reason")),
            ["stop_sequence"] = null,
            ["usage"] = Usage(Object(completion, "usage")),
        };
    }

    private static string? TextOrParts(JsonNode content)
    {
        try
        {
            return TextOf(content, "content");
        }
        catch (UntranslatableException)
        {
            return null;
        }
    }

    /// <summary>
    /// A tool call's arguments as the object Anthropic carries. A model can emit arguments that are not JSON (a cut
    /// answer); they are kept as a string member rather than lost.
    /// </summary>
    internal static JsonNode Arguments(string? arguments)
    {
        if (string.IsNullOrWhiteSpace(arguments)) return new JsonObject();
        try
        {
            if (JsonNode.Parse(arguments) is JsonObject parsed) return parsed;
        }
        catch (System.Text.Json.JsonException)
        {
        }
        return new JsonObject { ["arguments"] = arguments };
    }

    /// <summary>OpenAI's finish reason as Anthropic's stop reason.</summary>
    public static string? StopReason(string? finishReason) => finishReason switch
    {
        null => null,
        "length" => "max_tokens",
        "tool_calls" or "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    };

    /// <summary>
    /// OpenAI's usage in Anthropic's terms: OpenAI's prompt count includes its cached tokens, Anthropic's input count
    /// excludes them, so the cached part moves to <c>cache_read_input_tokens</c>. OpenAI reports no cache writes.
    /// Reasoning tokens are already inside <c>completion_tokens</c> and are not added again.
    /// </summary>
    public static JsonObject Usage(JsonObject? usage)
    {
        var prompt = Count(usage, "prompt_tokens");
        var cached = Math.Min(prompt, Object(usage, "prompt_tokens_details") is { } details ? Count(details, "cached_tokens") : Count(usage, "prompt_cache_hit_tokens"));
        return new JsonObject
        {
            ["input_tokens"] = prompt - cached,
            ["cache_creation_input_tokens"] = 0,
            ["cache_read_input_tokens"] = cached,
            ["output_tokens"] = Count(usage, "completion_tokens"),
        };
    }

    /// <summary>OpenAI's error body (<c>{error: {message, type}}</c>) as Anthropic's, its type chosen by the status.</summary>
    public static JsonObject ErrorFromOpenAi(JsonObject body, int status) => new()
    {
        ["type"] = "error",
        ["error"] = new JsonObject
        {
            ["type"] = status switch
            {
                400 or 422 => "invalid_request_error",
                401 => "authentication_error",
                403 => "permission_error",
                404 => "not_found_error",
                413 => "request_too_large",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                _ => "api_error",
            },
            ["message"] = String(Object(body, "error"), "message") ?? String(body, "message") ?? body.ToJsonString(),
        },
    };
}
