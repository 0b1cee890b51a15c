using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using static Lava.Billing.Translation.JsonNodes;

namespace Lava.Billing.Translation;

/// <summary>
/// Anthropic's message events rewritten as OpenAI <c>chat.completion.chunk</c>s, one event at a time:
/// <c>message_start</c> gives the role chunk; text, thinking and tool-input deltas give content,
/// <c>reasoning_content</c> and <c>tool_calls</c> deltas (a tool call's id and name when its block starts);
/// <c>message_delta</c> gives the finish reason; <c>message_stop</c> gives the usage chunk and <c>data: [DONE]</c>.
/// A stream that ends without <c>message_stop</c> gets no <c>[DONE]</c>, so the client sees it was cut.
/// </summary>
public sealed class OpenAiStream(DateTimeOffset now) : IStreamTranslator
{
    private string? _id;
    private string? _model;
    private JsonObject _usage = new();
    // Anthropic numbers content blocks across text and tools; OpenAI numbers tool calls on their own.
    private readonly Dictionary<long, int> _toolIndexOfBlock = [];

    public void Translate(SseEvent e, StringBuilder output)
    {
        JsonObject? data;
        try
        {
            data = e.Json() as JsonObject;
        }
        catch (JsonException)
        {
            return;
        }
        switch (String(data, "type"))
        {
            case "message_start":
                var message = Object(data, "message");
                _id = String(message, "id");
                _model = String(message, "model");
                Merge(Object(message, "usage"));
                Chunk(output, new JsonObject { ["role"] = "assistant", ["content"] = "" }, null);
                break;
            case "content_block_start" when Object(data, "content_block") is { } block && String(block, "type") == "tool_use":
                var toolIndex = _toolIndexOfBlock.Count;
                _toolIndexOfBlock[Long(data, "index") ?? 0] = toolIndex;
                Chunk(output, ToolDelta(toolIndex, new JsonObject
                {
                    ["id"] = String(block, "id"),
                    ["type"] = "function",
                    ["function"] = new JsonObject { ["name"] = String(block, "name"), ["arguments"] = "" },
                }), null);
                break;
            case "content_block_delta" when Object(data, "delta") is { } delta:
                switch (String(delta, "type"))
                {
                    case "text_delta":
                        Chunk(output, new JsonObject { ["content"] = String(delta, "text") }, null);
                        break;
                    case "thinking_delta":
                        Chunk(output, new JsonObject { ["reasoning_content"] = String(delta, "thinking") }, null);
                        break;
                    case "input_json_delta" when _toolIndexOfBlock.TryGetValue(Long(data, "index") ?? 0, out var index):
                        Chunk(output, ToolDelta(index, new JsonObject { ["function"] = new JsonObject { ["arguments"] = String(delta, "partial_json") } }), null);
                        break;
                }
                break;
            case "message_delta":
                Merge(Object(data, "usage"));
                Chunk(output, new JsonObject(), OpenAiAnswers.FinishReason(String(Object(data, "delta"), "stop_reason")));
                break;
            case "message_stop":
                Frame(output, Envelope(new JsonArray(), OpenAiAnswers.Usage(_usage)));
                output.Append("data: [DONE]\n\n");
                break;
            case "error":
                Frame(output, OpenAiAnswers.ErrorFromAnthropic(data!));
                break;
        }
    }

    /// <summary>message_delta counts are cumulative and carry input counts only when they changed.</summary>
    private void Merge(JsonObject? usage)
    {
        if (usage is null) return;
        foreach (var (name, value) in usage)
            if (value is JsonValue v && v.GetValueKind() == JsonValueKind.Number) _usage[name] = v.DeepClone();
    }

    private static JsonObject ToolDelta(int index, JsonObject call)
    {
        call["index"] = index;
        return new JsonObject { ["tool_calls"] = new JsonArray(call) };
    }

    private void Chunk(StringBuilder output, JsonObject delta, string? finishReason) =>
        Frame(output, Envelope(new JsonArray(new JsonObject
        {
            ["index"] = 0,
            ["delta"] = delta,
            ["logprobs"] = null,
            ["finish_reason"] = finishReason,
        }), null));

    private JsonObject Envelope(JsonArray choices, JsonObject? usage)
    {
        var chunk = new JsonObject
        {
            ["id"] = _id,
            ["object"] = "chat.completion.chunk",
            ["created"] = now.ToUnixTimeSeconds(),
            ["model"] = _model,
            ["choices"] = choices,
        };
        if (usage is not null) chunk["usage"] = usage;
        return chunk;
    }

    private static void Frame(StringBuilder output, JsonObject data) => output.Append("data: ").Append(data.ToJsonString()).Append("\n\n");
}
