using System.Text;
using System.Text.Json.Nodes;
using static Lava.Billing.Translation.JsonNodes;

namespace Lava.Billing.Translation;

/// <summary>Anthropic's answers rewritten in OpenAI's Chat Completions shape, for a client that speaks OpenAI. Pure.</summary>
public static class OpenAiAnswers
{
    /// <summary>A message becomes a <c>chat.completion</c> with one choice; thinking is carried as <c>reasoning_content</c>.</summary>
    public static JsonObject FromAnthropic(JsonObject message, DateTimeOffset now)
    {
        var text = new StringBuilder();
        var thinking = new StringBuilder();
        var calls = new JsonArray();
        foreach (var block in Array(message, "content") ?? [])
        {
            switch (String(block, "type"))
            {
                case "text":
                    text.Append(String(block, "text"));
                    break;
                case "thinking":
                    thinking.Append(String(block, "thinking"));
                    break;
                case "tool_use":
                    calls.Add(new JsonObject
                    {
                        ["id"] = String(block, "id"),
                        ["type"] = "function",
                        ["function"] = new JsonObject { ["name"] = String(block, "name"), ["arguments"] = (block!["input"] ?? new JsonObject()).ToJsonString() },
                    });
                    break;
            }
        }
        var reply = new JsonObject
        {
            ["role"] = "assistant",
            ["content"] = text.Length > 0 || calls.Count == 0 ? text.ToString() : null,
            ["refusal"] = null,
        };
        if (thinking.Length > 0) reply["reasoning_content"] = thinking.ToString();
        if (calls.Count > 0) reply["tool_calls"] = calls;
        return new JsonObject
        {
            ["id"] = String(message, "id"),
            ["object"] = "chat.completion",
            ["created"] = now.ToUnixTimeSeconds(),
            ["model"] = String(message, "model"),
            ["choices"] = new JsonArray(new JsonObject
            {
                ["index"] = 0,
                ["message"] = reply,
                ["logprobs"] = null,
                ["finish_reason"] = FinishReason(String(message, "stop_reason")),
            }),
            ["usage"] = Usage(Object(message, "usage")),
        };
    }

    /// <summary>
    /// Anthropic's stop reason as OpenAI's finish reason. A stop sequence is a plain stop in OpenAI; a refusal is its
    /// content filter; a paused long-running turn ends the answer like a stop.
    /// </summary>
    public static string? FinishReason(string? stopReason) => stopReason switch
    {
        null => null,
        "max_tokens" or "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    };

    /// <summary>
    /// Anthropic's usage in OpenAI's terms: OpenAI's prompt count includes the cached tokens (read and written), so the
    /// three disjoint Anthropic input counts are summed once; its output already includes any thinking.
    /// </summary>
    public static JsonObject Usage(JsonObject? usage)
    {
        var uncached = Count(usage, "input_tokens");
        var cacheRead = Count(usage, "cache_read_input_tokens");
        var cacheWrite = Count(usage, "cache_creation_input_tokens");
        var output = Count(usage, "output_tokens");
        var prompt = uncached + cacheRead + cacheWrite;
        return new JsonObject
        {
            ["prompt_tokens"] = prompt,
            ["completion_tokens"] = output,
            ["total_tokens"] = prompt + output,
            ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = cacheRead },
        };
    }

    /// <summary>Anthropic's error body as OpenAI's; a body that is not Anthropic's error shape keeps its text as the message.</summary>
    public static JsonObject ErrorFromAnthropic(JsonObject body)
    {
        var error = Object(body, "error");
        return new JsonObject
        {
            ["error"] = new JsonObject
            {
                ["message"] = String(error, "message") ?? body.ToJsonString(),
                ["type"] = String(error, "type") switch
                {
                    "api_error" or "overloaded_error" => "server_error",
                    { } type => type,
                    null => "server_error",
                },
                ["param"] = null,
                ["code"] = null,
            },
        };
    }
}
