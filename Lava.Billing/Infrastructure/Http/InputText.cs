using System.Text;
using System.Text.Json;
using System.Text.Unicode;

namespace Lava.Billing.Infrastructure.Http;

/// <summary>
/// What text the service accepts anywhere (docs/input.md): well-formed Unicode without U+0000. PostgreSQL's text and
/// jsonb cannot store U+0000 or invalid UTF-8, and a value the database refuses while binding a statement must never
/// get that far (docs/input.md, "Why at the edge").
/// </summary>
public static class InputText
{
    public const string Rule = "must be valid Unicode text without NUL (U+0000) characters";

    public static bool IsClean(string? text)
    {
        if (text is null) return true;
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c == '\0') return false;
            if (char.IsHighSurrogate(c))
            {
                if (i + 1 >= text.Length || !char.IsLowSurrogate(text[i + 1])) return false;
                i++;
            }
            else if (char.IsLowSurrogate(c))
            {
                return false;
            }
        }
        return true;
    }

    public static bool IsClean(ReadOnlySpan<byte> utf8) => utf8.IndexOf((byte)0) < 0 && Utf8.IsValid(utf8);

    /// <summary>
    /// A percent-encoded URL part (path or query) decoded to bytes: clean when the bytes are UTF-8 without NUL. Sequences
    /// that are not <c>%XX</c> stay as they are, as every URL decoder here leaves them.
    /// </summary>
    public static bool IsCleanPercentEncoded(string? raw)
    {
        if (string.IsNullOrEmpty(raw)) return true;
        if (!IsClean(raw)) return false;
        var bytes = new List<byte>(raw.Length);
        Span<byte> scratch = stackalloc byte[4];
        for (var i = 0; i < raw.Length; i++)
        {
            var c = raw[i];
            if (c == '%' && i + 2 < raw.Length && Uri.IsHexDigit(raw[i + 1]) && Uri.IsHexDigit(raw[i + 2]))
            {
                bytes.Add((byte)Convert.ToInt32(raw.Substring(i + 1, 2), 16));
                i += 2;
            }
            else if (char.IsHighSurrogate(c))
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(raw.Substring(i, 2)));
                i++;
            }
            else
            {
                var n = new Rune(c).EncodeToUtf8(scratch);
                for (var k = 0; k < n; k++) bytes.Add(scratch[k]);
            }
        }
        return IsClean(bytes.ToArray());
    }

    /// <summary>Why a JSON document is refused before anything reads it, or null when it may be read.</summary>
    public sealed record JsonRefusal(string? Path, string Message, bool DuplicateKey);

    /// <summary>
    /// Walks a JSON document once: every string and member name must be clean (escapes included: <c>\u0000</c> and lone
    /// <c>\ud800</c> are refused), and no object may name a member twice. Syntax errors are left to the reader that
    /// binds the document, which reports them with its own message.
    /// </summary>
    public static JsonRefusal? CheckJson(ReadOnlySpan<byte> json, int maxDepth = 256)
    {
        if (!Utf8.IsValid(json)) return new JsonRefusal(null, "The JSON text is not valid UTF-8.", false);
        var reader = new Utf8JsonReader(json, new JsonReaderOptions { MaxDepth = maxDepth });
        var frames = new Stack<Frame>();
        try
        {
            while (reader.Read())
            {
                switch (reader.TokenType)
                {
                    case JsonTokenType.StartObject:
                        Advance(frames);
                        frames.Push(new Frame(new HashSet<string>(StringComparer.Ordinal)));
                        break;
                    case JsonTokenType.StartArray:
                        Advance(frames);
                        frames.Push(new Frame(null));
                        break;
                    case JsonTokenType.EndObject or JsonTokenType.EndArray:
                        frames.Pop();
                        break;
                    case JsonTokenType.PropertyName:
                        var frame = frames.Peek();
                        if (!TryRead(ref reader, out var name)) return new JsonRefusal(PathOf(frames), Rule, false);
                        frame.Name = name;
                        if (!frame.Keys!.Add(name)) return new JsonRefusal(PathOf(frames), "is given more than once", true);
                        break;
                    case JsonTokenType.String:
                        Advance(frames);
                        if (!TryRead(ref reader, out _)) return new JsonRefusal(PathOf(frames), Rule, false);
                        break;
                    default:
                        Advance(frames);
                        break;
                }
            }
        }
        catch (JsonException)
        {
            // Malformed or too deep: the binder (or the provider, for a forwarded body) answers that.
        }
        return null;
    }

    private sealed class Frame(HashSet<string>? keys)
    {
        public HashSet<string>? Keys { get; } = keys;
        public string? Name { get; set; }
        public int Index { get; set; } = -1;
    }

    // A value inside an array moves its index on; inside an object the member name already placed it.
    private static void Advance(Stack<Frame> frames)
    {
        if (frames.TryPeek(out var top) && top.Keys is null) top.Index++;
    }

    private static bool TryRead(ref Utf8JsonReader reader, out string value)
    {
        try
        {
            value = reader.GetString()!;
            return value.IndexOf('\0') < 0;
        }
        catch (InvalidOperationException)
        {
            // Lone surrogate escapes, or bytes that are not UTF-8.
            value = "";
            return false;
        }
    }

    private static string? PathOf(Stack<Frame> frames)
    {
        var path = new StringBuilder();
        foreach (var frame in frames.Reverse())
        {
            if (frame.Keys is not null && frame.Name is not null) path.Append(path.Length == 0 ? "" : ".").Append(frame.Name);
            else if (frame.Keys is null && frame.Index >= 0) path.Append('[').Append(frame.Index).Append(']');
        }
        return path.Length == 0 ? null : path.ToString();
    }
}
