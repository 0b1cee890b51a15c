using System.Text.Json;
using System.Text.Json.Nodes;
using static Lava.Billing.Translation.JsonNodes;

namespace Lava.Billing.Translation;

/// <summary>
/// An OpenAI Chat Completions request rewritten as an Anthropic Messages request. Pure. System and developer messages
/// become the top-level <c>system</c>; tool results become <c>tool_result</c> blocks of a user turn; assistant tool
/// calls become <c>tool_use</c> blocks; consecutive turns of one role are merged, as Anthropic alternates roles.
/// What has no Anthropic counterpart is refused (docs/gateway.md lists it), never dropped silently, except members
/// that only tune OpenAI's own service.
/// </summary>
public static class AnthropicRequests
{
    public const string Version = "2023-06-01";

    // Members that do not change what the model answers, or that Anthropic does on its own: left out.
    private static readonly HashSet<string> Ignored = ["stream_options", "store", "metadata", "service_tier", "seed", "prompt_cache_key", "safety_identifier"];
    private static readonly HashSet<string> Mapped =
    [
        "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "stream", "tools",
        "tool_choice", "parallel_tool_calls", "user", "n", "response_format",
    ];

    public static JsonObject FromOpenAi(JsonObject request, RequestSettings settings)
    {
        foreach (var (name, value) in request)
        {
            if (value is null || Mapped.Contains(name) || Ignored.Contains(name)) continue;
            throw new UntranslatableException($"'{name}' has no counterpart in Anthropic's Messages API.");
        }
        if (Long(request, "n") is { } n && n != 1) throw new UntranslatableException("n must be 1: Anthropic answers one choice.");
        if (String(Object(request, "response_format"), "type") is { } format && format != "text")
            throw new UntranslatableException($"response_format '{format}' has no counterpart in Anthropic's Messages API.");

        var result = new JsonObject { ["model"] = Copy(request["model"]) };
        var (system, messages) = Messages(Array(request, "messages") ?? throw new UntranslatableException("messages is required."));
        if (system.Count > 0) result["system"] = system;
        result["messages"] = messages;
        result["max_tokens"] = Long(request, "max_completion_tokens") ?? Long(request, "max_tokens") ?? settings.DefaultMaxTokens;
        // OpenAI's temperature runs to 2, Anthropic's to 1: the top of OpenAI's range is Anthropic's most random.
        if (request["temperature"] is JsonValue t && t.TryGetValue<double>(out var temperature)) result["temperature"] = Math.Min(temperature, 1.0);
        if (request["top_p"] is { } topP) result["top_p"] = Copy(topP);
        if (request["stop"] is { } stop)
            result["stop_sequences"] = stop is JsonArray list ? Copy(list) : new JsonArray(Copy(stop));
        if (Bool(request, "stream") == true) result["stream"] = true;
        // Without tools Anthropic takes no tool_choice; OpenAI's "none" then means what leaving it out means.
        if (Array(request, "tools") is { Count: > 0 } tools)
        {
            result["tools"] = Tools(tools);
            if (ToolChoice(request["tool_choice"], Bool(request, "parallel_tool_calls")) is { } choice) result["tool_choice"] = choice;
        }
        if (String(request, "user") is { } user) result["metadata"] = new JsonObject { ["user_id"] = user };
        return result;
    }

    private static (JsonArray System, JsonArray Messages) Messages(JsonArray messages)
    {
        var system = new JsonArray();
        var turns = new JsonArray();
        foreach (var message in messages)
        {
            var role = String(message, "role");
            switch (role)
            {
                case "system" or "developer":
                    system.Add(new JsonObject { ["type"] = "text", ["text"] = TextOf(message!["content"], "A system message's content") });
                    break;
                case "user":
                    Append(turns, "user", UserContent(message!["content"]));
                    break;
                case "assistant":
                    Append(turns, "assistant", AssistantContent((JsonObject)message!));
                    break;
                case "tool":
                    Append(turns, "user", [ToolResult((JsonObject)message!)]);
                    break;
                default:
                    throw new UntranslatableException($"A message of role '{role ?? "?"}' has no counterpart in Anthropic's Messages API.");
            }
        }
        return (system, turns);
    }

    /// <summary>Adds blocks to the last turn when it has the same role, else starts a turn.</summary>
    private static void Append(JsonArray turns, string role, List<JsonNode> blocks)
    {
        if (blocks.Count == 0) return;
        if (turns.Count > 0 && String(turns[^1], "role") == role)
        {
            var content = (JsonArray)turns[^1]!["content"]!;
            foreach (var block in blocks) content.Add(block);
            return;
        }
        turns.Add(new JsonObject { ["role"] = role, ["content"] = new JsonArray([.. blocks]) });
    }

    private static List<JsonNode> UserContent(JsonNode? content)
    {
        if (content is JsonValue v && v.GetValueKind() == JsonValueKind.String) return [Text(v.GetValue<string>())];
        if (content is not JsonArray parts) throw new UntranslatableException("A user message's content must be a string or an array of parts.");
        return parts.Select(part => String(part, "type") switch
        {
            "text" => Text(String(part, "text") ?? ""),
            "image_url" => Image(String(Object(part, "image_url"), "url") ?? throw new UntranslatableException("image_url.url is required.")),
            var other => throw new UntranslatableException($"A content part of type '{other ?? "?"}' has no counterpart in Anthropic's Messages API."),
        }).ToList();
    }

    private static JsonNode Text(string text) => new JsonObject { ["type"] = "text", ["text"] = text };

    /// <summary>A data URL becomes an inline base64 image, any other URL an image Anthropic fetches itself.</summary>
    private static JsonNode Image(string url)
    {
        if (!url.StartsWith("data:", StringComparison.Ordinal))
            return new JsonObject { ["type"] = "image", ["source"] = new JsonObject { ["type"] = "url", ["url"] = url } };
        var comma = url.IndexOf(',');
        var header = comma > 0 ? url[5..comma] : "";
        if (!header.EndsWith(";base64", StringComparison.Ordinal)) throw new UntranslatableException("An image data URL must be base64.");
        return new JsonObject
        {
            ["type"] = "image",
            ["source"] = new JsonObject { ["type"] = "base64", ["media_type"] = header[..^7], ["data"] = url[(comma + 1)..] },
        };
    }

    private static List<JsonNode> AssistantContent(JsonObject message)
    {
        if (message["function_call"] is not null) throw new UntranslatableException("function_call (the older form of tool calls) is not translated; use tool_calls.");
        var blocks = new List<JsonNode>();
        var content = message["content"];
        if (content is JsonArray parts)
        {
            foreach (var part in parts)
            {
                var text = String(part, "type") switch
                {
                    "text" => String(part, "text"),
                    "refusal" => String(part, "refusal"),
                    var other => throw new UntranslatableException($"An assistant content part of type '{other ?? "?"}' is not translated."),
                };
                if (!string.IsNullOrEmpty(text)) blocks.Add(Text(text));
            }
        }
        else if (TextOf(content, "An assistant message's content") is { Length: > 0 } text) blocks.Add(Text(text));
        foreach (var call in Array(message, "tool_calls") ?? [])
        {
            var function = Object(call, "function") ?? throw new UntranslatableException("A tool call needs a function.");
            blocks.Add(new JsonObject
            {
                ["type"] = "tool_use",
                ["id"] = String(call, "id") ?? throw new UntranslatableException("A tool call needs an id."),
                ["name"] = String(function, "name") ?? throw new UntranslatableException("A tool call needs a function name."),
                ["input"] = Arguments(String(function, "arguments")),
            });
        }
        return blocks;
    }

    /// <summary>OpenAI carries a call's arguments as a JSON string; Anthropic as the object itself.</summary>
    private static JsonNode Arguments(string? arguments)
    {
        if (string.IsNullOrWhiteSpace(arguments)) return new JsonObject();
        try
        {
            return JsonNode.Parse(arguments) as JsonObject ?? throw new UntranslatableException("A tool call's arguments must be a JSON object.");
        }
        catch (JsonException)
        {
            throw new UntranslatableException("A tool call's arguments must be a JSON object.");
        }
    }

    private static JsonNode ToolResult(JsonObject message) => new JsonObject
    {
        ["type"] = "tool_result",
        ["tool_use_id"] = String(message, "tool_call_id") ?? throw new UntranslatableException("A tool message needs tool_call_id."),
        ["content"] = TextOf(message["content"], "A tool message's content"),
    };

    private static JsonArray Tools(JsonArray tools) => new([.. tools.Select(tool =>
    {
        if (String(tool, "type") != "function" || Object(tool, "function") is not { } function)
            throw new UntranslatableException($"A tool of type '{String(tool, "type") ?? "?"}' has no counterpart in Anthropic's Messages API.");
        var result = new JsonObject { ["name"] = String(function, "name") ?? throw new UntranslatableException("A tool needs a function name.") };
        if (String(function, "description") is { } description) result["description"] = description;
        result["input_schema"] = Copy(Object(function, "parameters")) ?? new JsonObject { ["type"] = "object", ["properties"] = new JsonObject() };
        return (JsonNode)result;
    })]);

    private static JsonObject? ToolChoice(JsonNode? choice, bool? parallel)
    {
        JsonObject? result = choice switch
        {
            null => null,
            JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>() switch
            {
                "auto" => new JsonObject { ["type"] = "auto" },
                "required" => new JsonObject { ["type"] = "any" },
                "none" => new JsonObject { ["type"] = "none" },
                var other => throw new UntranslatableException($"tool_choice '{other}' is not known."),
            },
            JsonObject o when String(o, "type") == "function" && String(Object(o, "function"), "name") is { } name =>
                new JsonObject { ["type"] = "tool", ["name"] = name },
            _ => throw new UntranslatableException("tool_choice must be auto, required, none or a named function."),
        };
        if (parallel != false) return result;
        result ??= new JsonObject { ["type"] = "auto" };
        if (String(result, "type") != "none") result["disable_parallel_tool_use"] = true;
        return result;
    }
}
