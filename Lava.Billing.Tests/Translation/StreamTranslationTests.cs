using System.Text;
using System.Text.Json.Nodes;
using Lava.Billing.Translation;

namespace Lava.Billing.Tests.Translation;

public class StreamTranslationTests
{
    private static readonly DateTimeOffset Now = DateTimeOffset.FromUnixTimeSeconds(1_700_000_123);

    private static string AnthropicBytes(int take = int.MaxValue) =>
        string.Concat(ProviderFixtures.AnthropicStream.Take(take).Select(e => ProviderFixtures.Frame(e.Data, e.Event)));

    private static string OpenAiBytes(int take = int.MaxValue) =>
        string.Concat(ProviderFixtures.OpenAiStream.Take(take).Select(d => ProviderFixtures.Frame(d)));

    /// <summary>Feeds a stream in chunks of <paramref name="size"/> bytes, as a network would cut it.</summary>
    private static (string Output, List<int> Emitted) Run(IAnswerTranslator translator, string stream, int size)
    {
        var bytes = Encoding.UTF8.GetBytes(stream);
        var output = new MemoryStream();
        var emitted = new List<int>();
        for (var at = 0; at < bytes.Length; at += size)
        {
            var piece = translator.Feed(bytes.AsSpan(at, Math.Min(size, bytes.Length - at)));
            emitted.Add(piece.Length);
            output.Write(piece);
        }
        output.Write(translator.Finish());
        return (Encoding.UTF8.GetString(output.ToArray()), emitted);
    }

    // The translators' own framing, read as strictly as they write it: an optional event line, one data line, a blank line.
    private static List<(string? Event, JsonNode? Data, string Raw)> Events(string stream)
    {
        Assert.EndsWith("\n\n", stream);
        var events = new List<(string? Event, JsonNode? Data, string Raw)>();
        foreach (var frame in stream[..^2].Split("\n\n"))
        {
            var lines = frame.Split('\n');
            var name = lines is [var first, _] && first.StartsWith("event: ", StringComparison.Ordinal) ? first["event: ".Length..] : null;
            Assert.True(lines.Length == (name is null ? 1 : 2) && lines[^1].StartsWith("data: ", StringComparison.Ordinal), $"not one event: {frame}");
            var data = lines[^1]["data: ".Length..];
            events.Add((name, data == "[DONE]" ? null : JsonNode.Parse(data), data));
        }
        return events;
    }

    private static IAnswerTranslator ForOpenAiClient() => ChatTranslation.Between(ChatShape.OpenAiChat, ChatShape.AnthropicMessages)!.Answer(200, true, Now);

    private static IAnswerTranslator ForAnthropicClient() => ChatTranslation.Between(ChatShape.AnthropicMessages, ChatShape.OpenAiChat)!.Answer(200, true, Now);

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(100_000)]
    public void AnAnthropicStreamBecomesChatCompletionChunksWithToolCallsAFinishReasonAUsageChunkAndDone(int chunkBytes)
    {
        var (output, _) = Run(ForOpenAiClient(), AnthropicBytes(), chunkBytes);
        var events = Events(output);

        Assert.All(events, e => Assert.Null(e.Event));
        Assert.Equal("[DONE]", events[^1].Raw);
        var chunks = events.SkipLast(1).Select(e => e.Data!).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", (string?)c["object"]));
        Assert.All(chunks, c => Assert.Equal("msg_01A", (string?)c["id"]));
        Assert.Equal("assistant", (string?)chunks[0]["choices"]![0]!["delta"]!["role"]);
        var deltas = chunks.Where(c => c["choices"]!.AsArray().Count > 0).Select(c => c["choices"]![0]!["delta"]!).ToList();
        Assert.Equal("Let me check.", string.Concat(deltas.Select(d => (string?)d["content"])));
        Assert.Equal("Weather.", string.Concat(deltas.Select(d => (string?)d["reasoning_content"])));
        var calls = deltas.Where(d => d["tool_calls"] is not null).Select(d => d["tool_calls"]![0]!).ToList();
        Assert.Equal(("toolu_01", "get_weather"), ((string?)calls[0]["id"], (string?)calls[0]["function"]!["name"]));
        Assert.All(calls, c => Assert.Equal(0, (int?)c["index"]));
        Assert.Equal("{\"city\":\"Paris\"}", string.Concat(calls.Select(c => (string?)c["function"]!["arguments"])));
        Assert.Equal("tool_calls", (string?)chunks.Single(c => c["choices"]!.AsArray().Count > 0 && c["choices"]![0]!["finish_reason"] is not null)["choices"]![0]!["finish_reason"]);
        var usage = chunks[^1];
        Assert.Empty(usage["choices"]!.AsArray());
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"prompt_tokens":1300,"completion_tokens":300,"total_tokens":1600,"prompt_tokens_details":{"cached_tokens":1000}}"""), usage["usage"]));
    }

    [Fact]
    public void EachAnthropicEventIsTranslatedAsSoonAsItIsWholeNotAtTheEnd()
    {
        var translator = ForOpenAiClient();
        var first = translator.Feed(Encoding.UTF8.GetBytes(ProviderFixtures.Frame(ProviderFixtures.AnthropicStream[0].Data, "message_start")));

        Assert.Contains("\"role\":\"assistant\"", Encoding.UTF8.GetString(first));
        var text = translator.Feed(Encoding.UTF8.GetBytes(ProviderFixtures.Frame(ProviderFixtures.AnthropicStream[7].Data, "content_block_delta")));
        Assert.Contains("Let me check.", Encoding.UTF8.GetString(text));
    }

    [Fact]
    public void AnAnthropicStreamCutBeforeMessageStopEndsWithoutDoneSoTheClientSeesItWasCut()
    {
        var (output, _) = Run(ForOpenAiClient(), AnthropicBytes(take: 10), 64);

        Assert.DoesNotContain("[DONE]", output);
        Assert.DoesNotContain("\"usage\"", output);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(13)]
    [InlineData(100_000)]
    public void AnOpenAiStreamBecomesAnthropicEventsWithATextBlockAToolUseBlockAndTheUsageInMessageDelta(int chunkBytes)
    {
        var (output, _) = Run(ForAnthropicClient(), OpenAiBytes(), chunkBytes);
        var events = Events(output);

        Assert.Equal(
            ["message_start", "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
             "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop", "message_delta", "message_stop"],
            events.Select(e => e.Event!).ToArray());
        Assert.All(events, e => Assert.Equal(e.Event, (string?)e.Data!["type"]));
        Assert.Equal("chatcmpl-1", (string?)events[0].Data!["message"]!["id"]);
        Assert.Equal("text", (string?)events[1].Data!["content_block"]!["type"]);
        Assert.Equal("Let me check.", (string?)events[2].Data!["delta"]!["text"] + (string?)events[3].Data!["delta"]!["text"]);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"type":"tool_use","id":"call_1","name":"get_weather","input":{}}"""), events[5].Data!["content_block"]));
        Assert.Equal(1, (int?)events[6].Data!["index"]);
        Assert.Equal("{\"city\":\"Paris\"}", (string?)events[6].Data!["delta"]!["partial_json"] + (string?)events[7].Data!["delta"]!["partial_json"]);
        Assert.Equal("tool_use", (string?)events[9].Data!["delta"]!["stop_reason"]);
        Assert.True(JsonNode.DeepEquals(
            JsonNode.Parse("""{"input_tokens":200,"cache_creation_input_tokens":0,"cache_read_input_tokens":1000,"output_tokens":300}"""),
            events[9].Data!["usage"]));
    }

    [Fact]
    public void AnOpenAiStreamCutBeforeDoneGetsNoMessageStop()
    {
        var (output, _) = Run(ForAnthropicClient(), OpenAiBytes(take: 5), 64);

        Assert.Contains("message_start", output);
        Assert.DoesNotContain("message_stop", output);
    }

    [Fact]
    public void AnErrorEventInTheMiddleOfAStreamReachesTheClientInItsShape()
    {
        var (output, _) = Run(ForOpenAiClient(), AnthropicBytes(take: 1) + ProviderFixtures.Frame(ProviderFixtures.AnthropicError, "error"), 64);

        var error = Events(output)[^1].Data!;
        Assert.Equal("Overloaded", (string?)error["error"]!["message"]);
    }

    [Fact]
    public void AMalformedEventIsSkippedAndTheRestOfTheStreamStillTranslated()
    {
        var broken = ProviderFixtures.Frame("""{"type":"content_block_delta","index":1,"index":2,"delta":{"type":"text_delta","text":"x"}}""", "content_block_delta");

        var (output, _) = Run(ForOpenAiClient(), AnthropicBytes(take: 7) + broken + string.Concat(ProviderFixtures.AnthropicStream.Skip(7)
            .Select(e => ProviderFixtures.Frame(e.Data, e.Event))), 64);

        Assert.DoesNotContain("\"content\":\"x\"", output);
        Assert.EndsWith("data: [DONE]\n\n", output);
        Assert.Contains("Let me check.", output);
    }

    [Fact]
    public void AStrayByteThatIsNotUtf8CostsTheClientOneCharacterNotTheEvent()
    {
        // Read as text, a byte that is not UTF-8 becomes U+FFFD; read as JSON bytes it must too, not lose the delta.
        var frame = Encoding.UTF8.GetBytes(ProviderFixtures.Frame(
            """{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"caf#"}}""", "content_block_delta"));
        byte[] broken = [.. frame.Select(b => b == (byte)'#' ? (byte)0xE9 : b)];
        var translator = ForOpenAiClient();
        var output = new MemoryStream();
        output.Write(translator.Feed(Encoding.UTF8.GetBytes(AnthropicBytes(take: 7))));
        output.Write(translator.Feed(broken));
        output.Write(translator.Feed(Encoding.UTF8.GetBytes(string.Concat(ProviderFixtures.AnthropicStream.Skip(7)
            .Select(e => ProviderFixtures.Frame(e.Data, e.Event))))));
        output.Write(translator.Finish());

        var contents = Events(Encoding.UTF8.GetString(output.ToArray()))
            .Select(e => e.Data?["choices"] is JsonArray { Count: > 0 } choices ? (string?)choices[0]!["delta"]?["content"] : null)
            .ToList();
        Assert.Contains("caf\uFFFD", contents);
        Assert.Contains("Let me check.", contents);
    }
}
