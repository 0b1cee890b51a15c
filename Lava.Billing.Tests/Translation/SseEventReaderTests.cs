using System.Text;
using Lava.Billing.Translation;

namespace Lava.Billing.Tests.Translation;

/// <summary>The one event-stream splitter, behind both the gateway's usage reading and the answer translators.</summary>
public class SseEventReaderTests
{
    private static readonly string Huge = new('a', SseEventReader.MaxEventBytes + 100_000);

    /// <summary>Feeds <paramref name="stream"/> in chunks of <paramref name="chunkBytes"/> and reads every event out.</summary>
    private static List<string> Read(string stream, int chunkBytes)
    {
        var reader = new SseEventReader();
        var events = new List<string>();
        var bytes = Encoding.UTF8.GetBytes(stream);
        for (var at = 0; at < bytes.Length; at += chunkBytes)
        {
            ReadOnlySpan<byte> chunk = bytes.AsSpan(at, Math.Min(chunkBytes, bytes.Length - at));
            while (reader.TryRead(ref chunk, out var e))
                events.Add(Encoding.UTF8.GetString(e.Data.Span));
        }
        return events;
    }

    public static TheoryData<int, string> Splits => new()
    {
        { 1, "\n" }, { 1, "\r\n" }, { 1, "\r" }, { 2, "\r\n" }, { 3, "\n" }, { 7, "\r\n" }, { 64, "\r" }, { 100_000, "\n" },
    };

    [Theory]
    [MemberData(nameof(Splits))]
    public void EventsComeOutWholeWhereverTheChunksCutTheBytes(int chunkBytes, string newline)
    {
        string[] lines =
        [
            ": keep-alive", "",
            "event: message_start", "data: {\"a\":\"caf\u00e9 \U0001F600\"}", "",
            "id: 7", "retry: 1000", "data:no space", "data:  two spaces", "", "",
            "event:ping", "data", "", // a field without a colon is not data: no event
            "data: [DONE]", "",
            "data: not ended",
        ];
        var events = Read(string.Join(newline, lines), chunkBytes);

        Assert.Equal(["{\"a\":\"caf\u00e9 \U0001F600\"}", "no space\n two spaces", "[DONE]"], events);
    }

    [Theory]
    [InlineData(8192)]
    [InlineData(int.MaxValue)]
    public void AnEventWithADataLinePastTheBoundIsSkippedWholeAndTheNextIsReadAsUsual(int chunkBytes)
    {
        var stream = "event: big\ndata: " + Huge + "\ndata: {\"tail\":1}\n\n" + "data: {\"next\":2}\n\n";

        Assert.Equal(["{\"next\":2}"], Read(stream, chunkBytes));
    }

    [Fact]
    public void DataLinesThatTogetherPassTheBoundSkipTheirEvent()
    {
        var line = "data: " + new string('b', 1000) + "\n";
        var stream = "event: many\n" + string.Concat(Enumerable.Repeat(line, SseEventReader.MaxEventBytes / 1000 + 10)) + "\n" +
                     "event: after\ndata: {\"next\":2}\n\n";

        Assert.Equal(["{\"next\":2}"], Read(stream, 4096));
    }

    [Theory]
    [InlineData(8192)]
    [InlineData(int.MaxValue)]
    public void ALineOfAnotherFieldPastTheBoundIsIgnoredWithoutLosingItsEvent(int chunkBytes)
    {
        // The event name is one of those fields: the readers go by the data alone, so its event is not lost either.
        var stream = ": " + Huge + "\nevent: " + Huge + "\nid: " + Huge + "\ndata: {\"a\":1}\n\ndata: {\"b\":2}\n\n";

        Assert.Equal(["{\"a\":1}", "{\"b\":2}"], Read(stream, chunkBytes));
    }

    [Fact]
    public void ALineThatNeverEndsIsNotBufferedPastTheBound()
    {
        var reader = new SseEventReader();
        var chunk = Encoding.ASCII.GetBytes("data: " + new string('c', 64 * 1024 - 6));
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 160; i++)
        {
            ReadOnlySpan<byte> rest = chunk;
            Assert.False(reader.TryRead(ref rest, out _));
            Assert.True(rest.IsEmpty);
        }

        // 10 MiB went by; the reader grew its line buffer to the bound (about twice that in all its growth) and no further.
        var allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(allocated < 3 * SseEventReader.MaxEventBytes, $"allocated {allocated} bytes");
    }
}
