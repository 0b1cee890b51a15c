using System.Buffers;
using System.Buffers.Text;
using System.Data.Common;
using System.Globalization;
using System.IO.Pipelines;
using System.Text.Json;
using Lava.Billing.Infrastructure;

namespace Lava.Billing.Finance;

/// <summary>
/// Writes an export's rows as UTF-8 straight into the response's pipe (docs/exports.md, "Values"): numbers, money and
/// timestamps formatted into the pipe's buffer, text copied as the database sent it (a text column read as a stream of
/// its UTF-8 bytes), so a row costs no string. A million-row export is mostly this loop; ExportGoldenTests holds its
/// output to the byte.
/// </summary>
public static class ExportWriter
{
    /// <summary>Room for any long, decimal (F10 or plain) or timestamp this writer formats.</summary>
    private const int MaxFormatted = 64;

    private const string CanonicalNumber = "0.############################";

    // RFC 4180 as CsvHelper wrote it before: quoted when it holds a comma, quote, CR or LF, or begins or ends with a space.
    private static readonly SearchValues<byte> CsvSpecial = SearchValues.Create(",\"\r\n"u8);

    public static async Task<long> WriteCsvAsync(PipeWriter pipe, DbDataReader reader, IReadOnlyList<ExportColumn> columns, CancellationToken ct)
    {
        var kinds = KindsOf(columns);
        WriteCsvHeader(pipe, columns);
        long rows = 0;
        while (await reader.ReadAsync(ct))
        {
            WriteCsvRow(pipe, reader, kinds);
            // The first row leaves at once; after it, whole buffers.
            if (++rows == 1 || pipe.UnflushedBytes >= Exports.FlushBytes) await pipe.FlushAsync(ct);
        }
        await pipe.FlushAsync(ct);
        return rows;
    }

    public static async Task<long> WriteNdjsonAsync(PipeWriter pipe, DbDataReader reader, IReadOnlyList<ExportColumn> columns, CancellationToken ct)
    {
        var kinds = KindsOf(columns);
        var names = columns.Select(c => JsonEncodedText.Encode(c.Name)).ToArray();
        var scratch = new byte[1024];
        await using var json = new Utf8JsonWriter(pipe);
        long rows = 0;
        while (await reader.ReadAsync(ct))
        {
            WriteNdjsonRow(json, reader, kinds, names, ref scratch);
            json.Flush();
            pipe.Write("\n"u8);
            json.Reset();
            if (++rows == 1 || pipe.UnflushedBytes >= Exports.FlushBytes) await pipe.FlushAsync(ct);
        }
        await pipe.FlushAsync(ct);
        return rows;
    }

    /// <summary>The columns' kinds; a debit or credit column is derived from the money column before it, so it must follow one.</summary>
    private static ColumnKind[] KindsOf(IReadOnlyList<ExportColumn> columns)
    {
        var kinds = columns.Select(c => c.Kind).ToArray();
        var firstMoney = Array.IndexOf(kinds, ColumnKind.Money);
        for (var i = 0; i < kinds.Length; i++)
            if (kinds[i] is ColumnKind.Debit or ColumnKind.Credit && (firstMoney < 0 || firstMoney > i))
                throw new InvalidOperationException($"the export column {columns[i].Name} is derived from an amount, and no amount comes before it");
        return kinds;
    }

    private static void WriteCsvHeader(IBufferWriter<byte> pipe, IReadOnlyList<ExportColumn> columns)
    {
        var output = new Output(pipe);
        for (var i = 0; i < columns.Count; i++)
        {
            if (i > 0) output.Byte((byte)',');
            var name = System.Text.Encoding.UTF8.GetBytes(columns[i].Name);
            var span = output.Take(2 * name.Length + 2);
            name.CopyTo(span);
            output.Wrote(QuoteInPlace(span, name.Length));
        }
        output.Bytes("\r\n"u8);
        output.Commit();
    }

    private static void WriteCsvRow(IBufferWriter<byte> pipe, DbDataReader reader, ColumnKind[] kinds)
    {
        var output = new Output(pipe);
        var money = 0m;
        // f is the query's field: derived columns (debit, credit) take none.
        for (int i = 0, f = 0; i < kinds.Length; i++)
        {
            if (i > 0) output.Byte((byte)',');
            if (kinds[i] is ColumnKind.Debit or ColumnKind.Credit)
            {
                output.Wrote(FormatDerived(money, kinds[i], output.Take(MaxFormatted)));
                continue;
            }
            if (reader.IsDBNull(f))
            {
                f++;
                continue;
            }
            if (kinds[i] is ColumnKind.Text or ColumnKind.Json)
            {
                using var stream = reader.GetStream(f);
                var length = checked((int)stream.Length);
                var span = output.Take(2 * length + 2);
                stream.ReadExactly(span[..length]);
                output.Wrote(QuoteInPlace(span, length));
            }
            else if (kinds[i] is ColumnKind.Money)
            {
                money = reader.GetDecimal(f);
                output.Wrote(FormatMoney(money, output.Take(MaxFormatted)));
            }
            else output.Wrote(Format(reader, f, kinds[i], output.Take(MaxFormatted)));
            f++;
        }
        output.Bytes("\r\n"u8);
        output.Commit();
    }

    private static void WriteNdjsonRow(Utf8JsonWriter json, DbDataReader reader, ColumnKind[] kinds, JsonEncodedText[] names, ref byte[] scratch)
    {
        Span<byte> formatted = stackalloc byte[MaxFormatted];
        var money = 0m;
        json.WriteStartObject();
        // f is the query's field: derived columns (debit, credit) take none.
        for (int i = 0, f = 0; i < kinds.Length; i++)
        {
            json.WritePropertyName(names[i]);
            if (kinds[i] is ColumnKind.Debit or ColumnKind.Credit)
            {
                json.WriteStringValue(formatted[..FormatDerived(money, kinds[i], formatted)]);
                continue;
            }
            if (reader.IsDBNull(f))
            {
                json.WriteNullValue();
                f++;
                continue;
            }
            switch (kinds[i])
            {
                case ColumnKind.Integer: json.WriteNumberValue(reader.GetInt64(f)); break;
                case ColumnKind.Number: json.WriteRawValue(formatted[..Format(reader, f, ColumnKind.Number, formatted)], skipInputValidation: true); break;
                case ColumnKind.Money:
                    money = reader.GetDecimal(f);
                    json.WriteStringValue(formatted[..FormatMoney(money, formatted)]);
                    break;
                case ColumnKind.Timestamp: json.WriteStringValue(formatted[..Format(reader, f, kinds[i], formatted)]); break;
                case ColumnKind.Json: json.WriteRawValue(ReadText(reader, f, ref scratch)); break;
                default: json.WriteStringValue(ReadText(reader, f, ref scratch)); break;
            }
            f++;
        }
        json.WriteEndObject();
    }

    /// <summary>A non-text value as CSV writes it (NDJSON the same, as a string or a number): its length in bytes.</summary>
    private static int Format(DbDataReader reader, int i, ColumnKind kind, Span<byte> destination)
    {
        int written;
        var done = kind switch
        {
            ColumnKind.Integer => Utf8Formatter.TryFormat(reader.GetInt64(i), destination, out written),
            ColumnKind.Number => reader.GetDecimal(i).TryFormat(destination, out written, CanonicalNumber, CultureInfo.InvariantCulture),
            ColumnKind.Timestamp => TryFormatTimestamp(reader.GetFieldValue<DateTime>(i), destination, out written),
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "text is copied and money formatted apart"),
        };
        if (!done) throw new InvalidOperationException($"a {kind} value did not fit {MaxFormatted} bytes");
        return written;
    }

    private static int FormatMoney(decimal amount, Span<byte> destination) =>
        Money.TryFormat(amount, destination, out var written) ? written
            : throw new InvalidOperationException($"a {ColumnKind.Money} value did not fit {MaxFormatted} bytes");

    /// <summary>The debit (positive part) or credit (negated negative part) of the row's last money value, else 0.</summary>
    private static int FormatDerived(decimal money, ColumnKind kind, Span<byte> destination) =>
        FormatMoney(kind == ColumnKind.Debit ? (money > 0 ? money : 0m) : (money < 0 ? -money : 0m), destination);

    /// <summary>
    /// UTC with the database's microsecond precision, <c>2026-03-01T08:15:00.123456Z</c>: what the format
    /// <c>yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'</c> writes (fractions truncated, not rounded), without parsing it per value.
    /// </summary>
    public static bool TryFormatTimestamp(DateTime utc, Span<byte> destination, out int written)
    {
        written = 0;
        if (destination.Length < 27) return false;
        var (year, month, day) = utc;
        Digits(destination[..4], year);
        destination[4] = (byte)'-';
        Digits(destination.Slice(5, 2), month);
        destination[7] = (byte)'-';
        Digits(destination.Slice(8, 2), day);
        destination[10] = (byte)'T';
        Digits(destination.Slice(11, 2), utc.Hour);
        destination[13] = (byte)':';
        Digits(destination.Slice(14, 2), utc.Minute);
        destination[16] = (byte)':';
        Digits(destination.Slice(17, 2), utc.Second);
        destination[19] = (byte)'.';
        Digits(destination.Slice(20, 6), (int)(utc.Ticks % TimeSpan.TicksPerSecond / 10));
        destination[26] = (byte)'Z';
        written = 27;
        return true;
    }

    private static void Digits(Span<byte> destination, int value)
    {
        for (var i = destination.Length - 1; i >= 0; i--, value /= 10) destination[i] = (byte)('0' + value % 10);
    }

    /// <summary>
    /// The field's <paramref name="length"/> bytes at the start of <paramref name="span"/> (which has room for
    /// 2 × length + 2), quoted in place when CSV needs it, each quote doubled: the field's length as written.
    /// </summary>
    private static int QuoteInPlace(Span<byte> span, int length)
    {
        var field = span[..length];
        if (length == 0 || (field.IndexOfAny(CsvSpecial) < 0 && field[0] != (byte)' ' && field[^1] != (byte)' ')) return length;
        // From the end backwards, so no byte is overwritten before it moves.
        var total = length + field.Count((byte)'"') + 2;
        var w = total - 1;
        span[w] = (byte)'"';
        for (var r = length - 1; r >= 0; r--)
        {
            var b = span[r];
            span[--w] = b;
            if (b == (byte)'"') span[--w] = b;
        }
        span[0] = (byte)'"';
        return total;
    }

    /// <summary>A text column's UTF-8 bytes, in <paramref name="scratch"/> (grown to the longest value seen).</summary>
    private static ReadOnlySpan<byte> ReadText(DbDataReader reader, int i, ref byte[] scratch)
    {
        using var stream = reader.GetStream(i);
        var length = checked((int)stream.Length);
        if (scratch.Length < length) scratch = new byte[Math.Max(length, 2 * scratch.Length)];
        stream.ReadExactly(scratch, 0, length);
        return scratch.AsSpan(0, length);
    }

    /// <summary>A row being written into the pipe's current buffer, advanced once per row (or when a field needs more room).</summary>
    private ref struct Output(IBufferWriter<byte> pipe)
    {
        private Span<byte> _span;
        private int _used;

        public Span<byte> Take(int size)
        {
            if (_span.Length - _used < size)
            {
                pipe.Advance(_used);
                _used = 0;
                _span = pipe.GetSpan(size);
            }
            return _span[_used..];
        }

        public void Wrote(int count) => _used += count;

        public void Byte(byte b)
        {
            Take(1)[0] = b;
            _used++;
        }

        public void Bytes(ReadOnlySpan<byte> bytes)
        {
            bytes.CopyTo(Take(bytes.Length));
            _used += bytes.Length;
        }

        public void Commit()
        {
            pipe.Advance(_used);
            _used = 0;
            _span = default;
        }
    }
}
