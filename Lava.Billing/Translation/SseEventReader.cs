using System.Buffers;

namespace Lava.Billing.Translation;

/// <summary>
/// One server-sent event: its <c>data:</c> lines joined by LF, as the UTF-8 bytes that came. Its <c>event:</c> name is
/// not kept: Anthropic repeats it as the data's <c>type</c>, which is what the readers go by, and OpenAI sends none. The data is the
/// reader's own buffer, valid until it reads on: a ref struct, so no one keeps an event past that; memory rather than a
/// span, so a JSON document can be read over the data without a copy.
/// </summary>
public readonly ref struct SseEvent(ReadOnlyMemory<byte> data)
{
    public ReadOnlyMemory<byte> Data { get; } = data;

    /// <summary>OpenAI's end of stream, <c>data: [DONE]</c>: not JSON.</summary>
    public bool IsDone => Data.Span.SequenceEqual("[DONE]"u8);

    /// <summary>
    /// The data as JSON (throws <see cref="System.Text.Json.JsonException"/> when it is not). Bytes that are not UTF-8 are
    /// read as U+FFFD, as a text decoder would: a provider's stray byte costs the client one character, not the event.
    /// </summary>
    public System.Text.Json.Nodes.JsonNode? Json() => System.Text.Unicode.Utf8.IsValid(Data.Span)
        ? System.Text.Json.Nodes.JsonNode.Parse(Data.Span)
        : System.Text.Json.Nodes.JsonNode.Parse(System.Text.Encoding.UTF8.GetString(Data.Span));
}

/// <summary>
/// Splits an event stream into events as its bytes pass by, in chunks cut anywhere (inside a line, between CR and LF,
/// inside a multi-byte character), without owning the stream: the gateway relays the same bytes unchanged. It holds at
/// most one line and one event, each bounded by <see cref="MaxEventBytes"/>: an event past the bound (a data line too
/// long, or too many data lines) is skipped whole, and a longer line of any other field is ignored, so a provider
/// cannot make a proxy buffer without end, and what follows an oversized event is read as usual.
/// </summary>
public sealed class SseEventReader
{
    public const int MaxEventBytes = 1024 * 1024;

    private readonly ArrayBufferWriter<byte> _line = new(256);
    private readonly ArrayBufferWriter<byte> _data = new(1024);
    private bool _lineTooLong;
    private bool _eventTooLong;
    private bool _afterCarriageReturn;
    // The last event was handed out; its bytes stay until the next read, which starts a new event.
    private bool _handedOut;

    /// <summary>
    /// Reads <paramref name="chunk"/> up to the end of the next whole event, and takes what it read off the chunk; false
    /// once the chunk is used up without one (what was read is kept for the next chunk). Call until it returns false.
    /// </summary>
    public bool TryRead(ref ReadOnlySpan<byte> chunk, out SseEvent e)
    {
        if (_handedOut)
        {
            _handedOut = false;
            _data.ResetWrittenCount();
        }
        while (!chunk.IsEmpty)
        {
            if (_afterCarriageReturn)
            {
                // A CRLF is one line end, even when the chunk boundary falls between the two.
                _afterCarriageReturn = false;
                if (chunk[0] == (byte)'\n')
                {
                    chunk = chunk[1..];
                    continue;
                }
            }
            var end = chunk.IndexOfAny((byte)'\r', (byte)'\n');
            var part = end < 0 ? chunk : chunk[..end];
            var room = MaxEventBytes - _line.WrittenCount;
            if (part.Length > room) _lineTooLong = true;
            if (room > 0 && !part.IsEmpty) _line.Write(part[..Math.Min(part.Length, room)]);
            if (end < 0)
            {
                chunk = [];
                break;
            }
            _afterCarriageReturn = chunk[end] == (byte)'\r';
            chunk = chunk[(end + 1)..];
            if (EndLine())
            {
                _handedOut = true;
                e = new SseEvent(_data.WrittenMemory);
                return true;
            }
        }
        e = default;
        return false;
    }

    /// <summary>True when the line ended an event that is to be handed out.</summary>
    private bool EndLine()
    {
        var line = _line.WrittenSpan;
        var whole = false;
        // A line too long to keep is never empty: it holds the bound's worth of bytes.
        if (line.IsEmpty)
        {
            whole = !_eventTooLong && _data.WrittenCount > 0;
            if (!whole) _data.ResetWrittenCount();
            _eventTooLong = false;
        }
        else if (line.StartsWith("data:"u8))
        {
            var value = line[5..];
            if (value is [(byte)' ', ..]) value = value[1..];
            if (_lineTooLong || _data.WrittenCount + value.Length + 1 > MaxEventBytes) _eventTooLong = true;
            else
            {
                if (_data.WrittenCount > 0) _data.Write("\n"u8);
                _data.Write(value);
            }
        }
        _line.ResetWrittenCount();
        _lineTooLong = false;
        return whole;
    }
}
