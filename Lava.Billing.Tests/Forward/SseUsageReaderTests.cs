using System.Text;
using Lava.Billing.Forward;

namespace Lava.Billing.Tests.Forward;

public class SseUsageReaderTests
{
    private static SseUsageReader Feed(ApiFormat format, string stream, int chunkBytes)
    {
        var reader = new SseUsageReader(format);
        var bytes = Encoding.UTF8.GetBytes(stream);
        for (var i = 0; i < bytes.Length; i += chunkBytes) reader.Feed(bytes.AsSpan(i, Math.Min(chunkBytes, bytes.Length - i)));
        return reader;
    }

    public static TheoryData<int, string> Splits => new() { { 1, "\n" }, { 7, "\r\n" }, { 64, "\n" }, { 100_000, "\r\n" }, { 3, "\r" } };

    [Theory]
    [MemberData(nameof(Splits))]
    public void OpenAiChatUsageComesFromTheFinalChunk(int chunkBytes, string newline)
    {
        var stream = string.Concat(SseSamples.OpenAiChat("gpt-4o", 100, 40, 20, 5).Select(d => SseSamples.Frame(d, newline: newline)));
        var reader = Feed(ApiFormat.OpenAiChat, stream, chunkBytes);
        Assert.True(reader.Complete);
        Assert.Equal(new NormalizedUsage(60, 40, 0, 20), reader.Usage);
        Assert.Equal("Hello world".Length, reader.OutputCharacters);
    }

    [Theory]
    [MemberData(nameof(Splits))]
    public void ResponsesUsageComesFromResponseCompleted(int chunkBytes, string newline)
    {
        var stream = string.Concat(SseSamples.Responses(125, 100, 48, 30).Select(e => SseSamples.Frame(e.Data, e.Event, newline)));
        var reader = Feed(ApiFormat.OpenAiResponses, stream, chunkBytes);
        Assert.True(reader.Complete);
        Assert.Equal(new NormalizedUsage(25, 100, 0, 48), reader.Usage);
        Assert.Equal("Hi there".Length, reader.OutputCharacters);
    }

    [Theory]
    [MemberData(nameof(Splits))]
    public void AnthropicTakesInputFromMessageStartAndOutputFromTheLastMessageDelta(int chunkBytes, string newline)
    {
        var stream = string.Concat(SseSamples.Anthropic("claude-sonnet-4-5", 100, 10, 20, 57).Select(e => SseSamples.Frame(e.Data, e.Event, newline)));
        var reader = Feed(ApiFormat.AnthropicMessages, stream, chunkBytes);
        Assert.True(reader.Complete);
        Assert.Equal(new NormalizedUsage(100, 10, 20, 57), reader.Usage);
    }

    [Fact]
    public void AnthropicMessageDeltaCountsOverrideTheStartWhenPresent()
    {
        var stream = SseSamples.Frame("""{"type":"message_start","message":{"usage":{"input_tokens":5,"output_tokens":1}}}""", "message_start") +
                     SseSamples.Frame("""{"type":"message_delta","usage":{"input_tokens":9,"cache_read_input_tokens":4,"output_tokens":30}}""", "message_delta") +
                     SseSamples.Frame("""{"type":"message_delta","usage":{"output_tokens":31}}""", "message_delta");
        Assert.Equal(new NormalizedUsage(5, 0, 0, 31), Feed(ApiFormat.AnthropicMessages, stream, 5).Usage);
    }

    [Theory]
    [MemberData(nameof(Splits))]
    public void GeminiTakesTheLastUsageMetadata(int chunkBytes, string newline)
    {
        var stream = string.Concat(SseSamples.Gemini(300, 200, 40, 60).Select(d => SseSamples.Frame(d, newline: newline)));
        var reader = Feed(ApiFormat.GeminiGenerateContent, stream, chunkBytes);
        Assert.True(reader.Complete);
        Assert.Equal(new NormalizedUsage(100, 200, 0, 100), reader.Usage);
        Assert.Equal("Hello".Length, reader.OutputCharacters);
    }

    [Fact]
    public void AStreamCutBeforeItsUsageIsIncompleteButCountsTheTextSeen()
    {
        var frames = SseSamples.Anthropic("claude-sonnet-4-5", 100, 0, 0, 57);
        var stream = string.Concat(frames.Take(5).Select(e => SseSamples.Frame(e.Data, e.Event)));
        var reader = Feed(ApiFormat.AnthropicMessages, stream, 16);
        Assert.False(reader.Complete);
        Assert.Equal(new NormalizedUsage(100, 0, 0, 1), reader.Usage);
        Assert.Equal("Hello world".Length, reader.OutputCharacters);
    }

    [Fact]
    public void MultiLineDataCommentsAndJunkAreTolerated()
    {
        var stream = ": keep-alive\n\n" +
                     "data: not json\n\n" +
                     "data: {\"choices\":[],\n" +
                     "data: \"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\n\n" +
                     "data:[DONE]\n\n";
        var reader = Feed(ApiFormat.OpenAiChat, stream, 2);
        Assert.Equal(new NormalizedUsage(3, 0, 0, 4), reader.Usage);
    }

    [Fact]
    public void AnOversizedEventIsSkippedWithoutBreakingTheNextOne()
    {
        var huge = "{\"x\":\"" + new string('a', 1_100_000) + "\"}";
        var stream = SseSamples.Frame(huge) + SseSamples.Frame("""{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}""");
        var reader = Feed(ApiFormat.OpenAiChat, stream, 8192);
        Assert.Equal(new NormalizedUsage(1, 0, 0, 2), reader.Usage);
    }
}
