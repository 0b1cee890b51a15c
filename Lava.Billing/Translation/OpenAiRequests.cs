using System.Text.Json;
using System.Text.Json.Nodes;
using static Lava.Billing.Translation.JsonNodes;

namespace Lava.Billing.Translation;

/// <summary>
/// An Anthropic Messages request rewritten as an OpenAI Chat Completions request. Pure. <c>system</c> becomes the first
/// message; <c>tool_use</c> blocks become the assistant's <c>tool_calls</c>; <c>tool_result</c> blocks become
/// <c>tool</c> messages, placed before the rest of their user turn so they follow the calls they answer. Thinking
/// blocks of earlier turns and cache marks are left out (OpenAI takes neither); what has no counterpart is refused.
/// </summary>
public static class OpenAiRequests
{
    private static readonly HashSet<string> Ignored = ["service_tier"];
    private static readonly HashSet<string> Mapped =
    [
        "model", "messages", "system", "max_tokens", "temperature", "top_p", "stop_sequences", "stream", "tools", "tool_choice",
        "metadata", "thinking",
    ];

    public static JsonObject FromAnthropic(JsonObject request, RequestSettings settings)
    {
        foreach (var (name, value) in request)
        {
            if (value is null || Mapped.Contains(name) || Ignored.Contains(name)) continue;
            throw new UntranslatableException($"'{name}' has no counterpart in OpenAI's Chat Completions API.");
        }
        if (String(Object(request, "thinking"), "type") is { } thinking && thinking != "disabled")
            throw new UntranslatableException("Extended thinking has no counterpart in OpenAI's Chat Completions API.");

        var messages = new JsonArray();
        if (request["system"] is { } system && TextOf(system, "system") is { Length: > 0 } systemText)
            messages.Add(new JsonObject { ["role"] = "system", ["content"] = systemText });
        foreach (var message in Array(request, "messages") ?? throw new UntranslatableException("messages is required."))
        {
            switch (String(message, "role"))
            {
                case "user":
                    foreach (var m in User(message!["content"])) messages.Add(m);
                    break;
                case "assistant":
                    messages.Add(Assistant(message!["content"]));
                    break;
                default:
                    throw new UntranslatableException($"A message of role '{String(message, "role") ?? "?"}' is not known.");
            }
        }

        var result = new JsonObject { ["model"] = Copy(request["model"]), ["messages"] = messages };
        var maxTokens = Long(request, "max_tokens") ?? settings.DefaultMaxTokens;
        result[settings.MaxCompletionTokens ? "max_completion_tokens" : "max_tokens"] = maxTokens;
        if (request["temperature"] is { } temperature) result["temperature"] = Copy(temperature);
        if (request["top_p"] is { } topP) result["top_p"] = Copy(topP);
        if (Array(request, "stop_sequences") is { Count: > 0 } stop) result["stop"] = Copy(stop);
        if (Bool(request, "stream") == true)
        {
            result["stream"] = true;
            // Anthropic streams always end with usage; OpenAI sends it only when asked.
            result["stream_options"] = new JsonObject { ["include_usage"] = true };
        }
        if (Array(request, "tools") is { Count: > 0 } tools)
        {
            result["tools"] = Tools(tools);
            if (Object(request, "tool_choice") is { } choice) ToolChoice(choice, result);
        }
        if (String(Object(request, "metadata"), "user_id") is { } user) result["user"] = user;
        return result;
    }

    private static List<JsonNode> User(JsonNode? content)
    {
        if (content is JsonValue v && v.GetValueKind() == JsonValueKind.String)
            return [new JsonObject { ["role"] = "user", ["content"] = v.GetValue<string>() }];
        if (content is not JsonArray blocks) throw new UntranslatableException("A user message's content must be a string or an array of blocks.");
        var results = new List<JsonNode>();
        var parts = new JsonArray();
        foreach (var block in blocks)
        {
            switch (String(block, "type"))
            {
                case "text":
                    parts.Add(new JsonObject { ["type"] = "text", ["text"] = String(block, "text") ?? "" });
                    break;
                case "image":
                    parts.Add(new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = ImageUrl(Object(block, "source")) } });
                    break;
                case "tool_result":
                    results.Add(ToolResult((JsonObject)block!));
                    break;
                case var other:
                    throw new UntranslatableException($"A content block of type '{other ?? "?"}' has no counterpart in OpenAI's Chat Completions API.");
            }
        }
        if (parts.Count > 0)
        {
            // A lone text part reads as plain content, which every OpenAI-compatible provider accepts.
            JsonNode userContent = parts is [JsonObject only] && String(only, "type") == "text" ? String(only, "text")! : parts;
            results.Add(new JsonObject { ["role"] = "user", ["content"] = userContent });
        }
        return results;
    }

    private static string ImageUrl(JsonObject? source) => String(source, "type") switch
    {
        "base64" => $"data:{String(source, "media_type")};base64,{String(source, "data")}",
        "url" => String(source, "url") ?? throw new UntranslatableException("An image source of type url needs a url."),
        var other => throw new UntranslatableException($"An image source of type '{other ?? "?"}' has no counterpart in OpenAI's Chat Completions API."),
    };

    /// <summary>OpenAI has no error flag on a tool result: an error's text says so itself.</summary>
    private static JsonNode ToolResult(JsonObject block)
    {
        var text = TextOf(block["content"], "A tool_result's content");
        if (Bool(block, "is_error") == true) text = "Error: " + text;
        return new JsonObject
        {
            ["role"] = "tool",
            ["tool_call_id"] = String(block, "tool_use_id") ?? throw new UntranslatableException("A tool_result needs tool_use_id."),
            ["content"] = text,
        };
    }

    private static JsonNode Assistant(JsonNode? content)
    {
        var message = new JsonObject { ["role"] = "assistant" };
        if (content is JsonValue v && v.GetValueKind() == JsonValueKind.String)
        {
            message["content"] = v.GetValue<string>();
            return message;
        }
        if (content is not JsonArray blocks) throw new UntranslatableException("An assistant message's content must be a string or an array of blocks.");
        var text = new System.Text.StringBuilder();
        var calls = new JsonArray();
        foreach (var block in blocks)
        {
            switch (String(block, "type"))
            {
                case "text":
                    text.Append(String(block, "text"));
                    break;
                case "tool_use":
                    calls.Add(new JsonObject
                    {
                        ["id"] = String(block, "id") ?? throw new UntranslatableException("A tool_use block needs an id."),
                        ["type"] = "function",
                        ["function"] = new JsonObject
                        {
                            ["name"] = String(block, "name") ?? throw new UntranslatableException("A tool_use block needs a name."),
                            ["arguments"] = (block!["input"] ?? new JsonObject()).ToJsonString(),
                        },
                    });
                    break;
                // The model's earlier thinking: OpenAI takes no such input, and the answer does not depend on it.
                case "thinking" or "redacted_thinking":
                    break;
                case var other:
                    throw new UntranslatableException($"An assistant block of type '{other ?? "?"}' has no counterpart in OpenAI's Chat Completions API.");
            }
        }
        message["content"] = text.Length > 0 || calls.Count == 0 ? text.ToString() : null;
        if (calls.Count > 0) message["tool_calls"] = calls;
        return message;
    }

    private static JsonArray Tools(JsonArray tools) => new([.. tools.Select(tool =>
    {
        // Anthropic's server tools (web search, code execution, …) carry a versioned type; only client tools translate.
        if (String(tool, "type") is { } type && type != "custom")
            throw new UntranslatableException($"The tool type '{type}' has no counterpart in OpenAI's Chat Completions API.");
        var function = new JsonObject { ["name"] = String(tool, "name") ?? throw new UntranslatableException("A tool needs a name.") };
        if (String(tool, "description") is { } description) function["description"] = description;
        function["parameters"] = Copy(Object(tool, "input_schema")) ?? new JsonObject { ["type"] = "object", ["properties"] = new JsonObject() };
        return (JsonNode)new JsonObject { ["type"] = "function", ["function"] = function };
    })]);

    private static void ToolChoice(JsonObject choice, JsonObject result)
    {
        result["tool_choice"] = String(choice, "type") switch
        {
            "auto" => "auto",
            "any" => "required",
            "none" => "none",
            "tool" => new JsonObject
            {
                ["type"] = "function",
                ["function"] = new JsonObject { ["name"] = String(choice, "name") ?? throw new UntranslatableException("tool_choice of type tool needs a name.") },
            },
            var other => throw new UntranslatableException($"tool_choice of type '{other ?? "?"}' is not known."),
        };
        if (Bool(choice, "disable_parallel_tool_use") == true) result["parallel_tool_calls"] = false;
    }
}
