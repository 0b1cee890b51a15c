using System.Buffers;
using System.Text;

namespace Lava.Billing.Translation;

/// <summary>One server-sent event: its <c>event:</c> name (null when it has none) and its <c>data:</c> lines joined.</summary>
public readonly record struct SseEvent(string? Name, string Data);

/// <summary>
/// Splits an event stream into events as its bytes arrive, in chunks cut anywhere (inside a line, between CR and LF,
/// inside a multi-byte character), holding at most one event. An event larger than the bound is skipped whole.
/// </summary>
public sealed class SseEventReader
{
    private const int MaxEventBytes = 1024 * 1024;

    private readonly ArrayBufferWriter<byte> _line = new(256);
    private readonly ArrayBufferWriter<byte> _data = new(1024);
    private string? _name;
    private bool _tooLong;
    private bool _afterCarriageReturn;

    public void Feed(ReadOnlySpan<byte> chunk, List<SseEvent> events)
    {
        while (!chunk.IsEmpty)
        {
            if (_afterCarriageReturn)
            {
                _afterCarriageReturn = false;
                if (chunk[0] == (byte)'\n')
                {
                    chunk = chunk[1..];
                    continue;
                }
            }
            var end = chunk.IndexOfAny((byte)'\r', (byte)'\n');
            var part = end < 0 ? chunk : chunk[..end];
            if (_line.WrittenCount + part.Length > MaxEventBytes) _tooLong = true;
            else _line.Write(part);
            if (end < 0) return;
            _afterCarriageReturn = chunk[end] == (byte)'\r';
            EndLine(events);
            chunk = chunk[(end + 1)..];
        }
    }

    private void EndLine(List<SseEvent> events)
    {
        var line = _line.WrittenSpan;
        if (line.IsEmpty)
        {
            if (!_tooLong && _data.WrittenCount > 0) events.Add(new SseEvent(_name, Encoding.UTF8.GetString(_data.WrittenSpan)));
            _data.ResetWrittenCount();
            _name = null;
            _tooLong = false;
        }
        else if (line.StartsWith("data:"u8))
        {
            var value = line[5..];
            if (value is [(byte)' ', ..]) value = value[1..];
            if (_data.WrittenCount + value.Length + 1 > MaxEventBytes) _tooLong = true;
            else
            {
                if (_data.WrittenCount > 0) _data.Write("\n"u8);
                _data.Write(value);
            }
        }
        else if (line.StartsWith("event:"u8))
        {
            _name = Encoding.UTF8.GetString(line[6..]).Trim();
        }
        _line.ResetWrittenCount();
    }
}
