using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using static Lava.Billing.Translation.JsonNodes;

namespace Lava.Billing.Translation;

/// <summary>
/// OpenAI <c>chat.completion.chunk</c>s rewritten as Anthropic's message events, one chunk at a time: the first chunk
/// opens the message (<c>message_start</c>); content deltas open a text block, a tool call's first delta (with its id)
/// opens a <c>tool_use</c> block and its argument pieces become <c>input_json_delta</c>s, each block closed when the
/// next opens; <c>[DONE]</c> closes the last block and sends <c>message_delta</c> (stop reason and the usage of the
/// usage chunk) and <c>message_stop</c>. A stream that ends without <c>[DONE]</c> gets no <c>message_stop</c>.
/// Reasoning text of OpenAI-compatible providers is not carried: an Anthropic thinking block needs a signature.
/// </summary>
public sealed class AnthropicStream : IStreamTranslator
{
    private bool _started;
    private bool _stopped;
    private int _blocks;
    private int? _open;
    private string? _openKind;
    private string? _stopReason;
    private JsonObject? _usage;
    private readonly Dictionary<long, int> _blockOfTool = [];

    public void Translate(SseEvent e, StringBuilder output)
    {
        if (_stopped) return;
        if (e.IsDone)
        {
            Start(output, null);
            Close(output);
            Event(output, "message_delta", new JsonObject
            {
                ["type"] = "message_delta",
                ["delta"] = new JsonObject { ["stop_reason"] = _stopReason ?? "end_turn", ["stop_sequence"] = null },
                ["usage"] = AnthropicAnswers.Usage(_usage),
            });
            Event(output, "message_stop", new JsonObject { ["type"] = "message_stop" });
            _stopped = true;
            return;
        }
        JsonObject? chunk;
        try
        {
            chunk = e.Json() as JsonObject;
        }
        catch (JsonException)
        {
            return;
        }
        if (chunk is null) return;
        if (Object(chunk, "error") is not null)
        {
            Event(output, "error", AnthropicAnswers.ErrorFromOpenAi(chunk, 500));
            return;
        }
        Start(output, chunk);
        if (Object(chunk, "usage") is { } counts) _usage = counts;
        foreach (var choice in Array(chunk, "choices") ?? [])
        {
            var delta = Object(choice, "delta");
            if (String(delta, "content") is { Length: > 0 } text)
            {
                if (_openKind != "text") Open(output, new JsonObject { ["type"] = "text", ["text"] = "" }, "text");
                Event(output, "content_block_delta", Delta(_open!.Value, new JsonObject { ["type"] = "text_delta", ["text"] = text }));
            }
            foreach (var call in Array(delta, "tool_calls") ?? [])
            {
                var toolIndex = Long(call, "index") ?? 0;
                var function = Object(call, "function");
                if (!_blockOfTool.TryGetValue(toolIndex, out var block))
                {
                    block = Open(output, new JsonObject
                    {
                        ["type"] = "tool_use",
                        ["id"] = String(call, "id"),
                        ["name"] = String(function, "name"),
                        ["input"] = new JsonObject(),
                    }, "tool_use");
                    _blockOfTool[toolIndex] = block;
                }
                if (String(function, "arguments") is { Length: > 0 } arguments)
                    Event(output, "content_block_delta", Delta(block, new JsonObject { ["type"] = "input_json_delta", ["partial_json"] = arguments }));
            }
            if (String(choice, "finish_reason") is { } finish) _stopReason = AnthropicAnswers.StopReason(finish);
        }
    }

    private void Start(StringBuilder output, JsonObject? chunk)
    {
        if (_started) return;
        _started = true;
        Event(output, "message_start", new JsonObject
        {
            ["type"] = "message_start",
            ["message"] = new JsonObject
            {
                ["id"] = String(chunk, "id"),
                ["type"] = "message",
                ["role"] = "assistant",
                ["model"] = String(chunk, "model"),
                ["content"] = new JsonArray(),
                ["stop_reason"] = null,
                ["stop_sequence"] = null,
                // OpenAI counts arrive only at the end; message_delta carries them all.
                ["usage"] = new JsonObject { ["input_tokens"] = 0, ["output_tokens"] = 0 },
            },
        });
    }

    private int Open(StringBuilder output, JsonObject block, string kind)
    {
        Close(output);
        var index = _blocks++;
        Event(output, "content_block_start", new JsonObject { ["type"] = "content_block_start", ["index"] = index, ["content_block"] = block });
        _open = index;
        _openKind = kind;
        return index;
    }

    private void Close(StringBuilder output)
    {
        if (_open is not { } index) return;
        Event(output, "content_block_stop", new JsonObject { ["type"] = "content_block_stop", ["index"] = index });
        _open = null;
        _openKind = null;
    }

    private static JsonObject Delta(int index, JsonObject delta) =>
        new() { ["type"] = "content_block_delta", ["index"] = index, ["delta"] = delta };

    private static void Event(StringBuilder output, string name, JsonObject data) =>
        output.Append("event: ").Append(name).Append("\ndata: ").Append(data.ToJsonString()).Append("\n\n");
}
