using System.Text;
using Lava.Billing.Forward;

namespace Lava.Billing.Tests.Forward;

public class UsageReaderTests
{
    private static UsageReader Read(ApiFormat format, bool eventStream, string body, int chunkBytes = 1000)
    {
        var reader = new UsageReader(format, eventStream);
        var bytes = Encoding.UTF8.GetBytes(body);
        for (var i = 0; i < bytes.Length; i += chunkBytes) reader.Feed(bytes.AsSpan(i, Math.Min(chunkBytes, bytes.Length - i)));
        reader.Finish();
        return reader;
    }

    [Fact]
    public void AJsonBodyIsParsedWhole()
    {
        var reader = Read(ApiFormat.AnthropicMessages, false, """{"content":[{"type":"text","text":"hi"}],"usage":{"input_tokens":3,"output_tokens":4}}""", 7);
        Assert.True(reader.Complete);
        Assert.Equal(new NormalizedUsage(3, 0, 0, 4), reader.Usage);
    }

    [Fact]
    public void AJsonBodyLargerThanTheBoundIsReadFromItsTail()
    {
        var data = string.Join(",", Enumerable.Repeat("""{"object":"embedding","embedding":[0.0123456789,0.0123456789,0.0123456789]}""", 80_000));
        var body = SseSamples.Fill("""{"object":"list","data":[@0@],"model":"text-embedding-3-small","usage":{"prompt_tokens":4096,"total_tokens":4096}}""", data);
        Assert.True(body.Length > 4 * 1024 * 1024);
        var reader = Read(ApiFormat.OpenAiChat, false, body, 16 * 1024);
        Assert.Equal(new NormalizedUsage(4096, 0, 0, 0), reader.Usage);
    }

    [Fact]
    public void UsageTextInsideAStringIsNotMistakenForTheMember()
    {
        var tail = Encoding.UTF8.GetBytes("""{"text":"the \"usage\": {\"input_tokens\": 999} trick","usage":{"input_tokens":2,"output_tokens":3}}""");
        Assert.Equal(new NormalizedUsage(2, 0, 0, 3), UsageReader.FromTail(ApiFormat.AnthropicMessages, tail));
        var only = Encoding.UTF8.GetBytes("""{"text":"the \"usage\": {\"input_tokens\": 999} trick"}""");
        Assert.Null(UsageReader.FromTail(ApiFormat.AnthropicMessages, only));
    }

    [Fact]
    public void AnEventStreamIsReadEventByEvent()
    {
        var stream = string.Concat(SseSamples.OpenAiChat("gpt-4o", 10, 0, 2, 0).Select(d => SseSamples.Frame(d)));
        Assert.Equal(new NormalizedUsage(10, 0, 0, 2), Read(ApiFormat.OpenAiChat, true, stream, 5).Usage);
    }

    [Theory]
    [InlineData(ApiFormat.Speech)]
    [InlineData(ApiFormat.Other)]
    public void FormatsWithoutUsageKeepNothing(ApiFormat format) =>
        Assert.Null(Read(format, false, """{"usage":{"prompt_tokens":1}}""").Usage);

    [Fact]
    public void ABodyThatIsNotJsonHasNoUsage()
    {
        var reader = Read(ApiFormat.Transcription, false, "plain text transcript");
        Assert.False(reader.Complete);
        Assert.Null(reader.Usage);
    }
}
