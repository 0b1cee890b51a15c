using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Lava.Billing.Translation;

/// <summary>
/// Rewrites a provider's answer for the client as its bytes arrive: <see cref="Feed"/> returns what can go to the
/// client now, <see cref="Finish"/> what is left once the whole answer arrived (not called when it was cut).
/// </summary>
public interface IAnswerTranslator
{
    string ContentType { get; }

    byte[] Feed(ReadOnlySpan<byte> chunk);

    byte[] Finish();
}

/// <summary>An event stream, translated event by event: nothing is held back but the event still arriving.</summary>
public sealed class SseAnswerTranslator(IStreamTranslator events) : IAnswerTranslator
{
    internal static bool Malformed(Exception e) => e is JsonException or ArgumentException or InvalidOperationException or FormatException;

    private readonly SseEventReader _reader = new();

    public string ContentType => "text/event-stream";

    public byte[] Feed(ReadOnlySpan<byte> chunk)
    {
        StringBuilder? output = null;
        while (_reader.TryRead(ref chunk, out var e))
        {
            try
            {
                events.Translate(e, output ??= new StringBuilder());
            }
            catch (Exception x) when (Malformed(x))
            {
                // An event the provider's shape does not allow (duplicate members, a wrong kind): skipped, the stream goes on.
            }
        }
        return output is null ? [] : Encoding.UTF8.GetBytes(output.ToString());
    }

    public byte[] Finish() => [];
}

/// <summary>One event of a provider's stream in, the client's events out (appended as framed text).</summary>
public interface IStreamTranslator
{
    void Translate(SseEvent e, StringBuilder output);
}

/// <summary>
/// A JSON body, kept whole (up to a bound) and translated at the end. A body past the bound, or one that is not a JSON
/// object, goes on as it came: an error body that is not JSON is first wrapped as <c>{"error": {"message": text}}</c>.
/// </summary>
public sealed class JsonAnswerTranslator(Func<JsonObject, JsonObject> translate, bool isError) : IAnswerTranslator
{
    private const int MaxBodyBytes = 8 * 1024 * 1024;
    private MemoryStream? _body = new();

    public string ContentType => "application/json";

    public byte[] Feed(ReadOnlySpan<byte> chunk)
    {
        if (_body is null) return chunk.ToArray();
        if (_body.Length + chunk.Length <= MaxBodyBytes)
        {
            _body.Write(chunk);
            return [];
        }
        // Too large to be a chat answer worth translating: what was kept and the rest go on unchanged.
        _body.Write(chunk);
        var kept = _body.ToArray();
        _body = null;
        return kept;
    }

    public byte[] Finish()
    {
        if (_body is null) return [];
        var bytes = _body.ToArray();
        _body = null;
        JsonObject? parsed;
        try
        {
            parsed = bytes.Length == 0 ? null : JsonNode.Parse(bytes) as JsonObject;
        }
        catch (JsonException)
        {
            parsed = null;
        }
        if (parsed is null && isError)
            parsed = new JsonObject { ["error"] = new JsonObject { ["message"] = Encoding.UTF8.GetString(bytes) } };
        if (parsed is null) return bytes;
        try
        {
            return JsonSerializer.SerializeToUtf8Bytes(translate(parsed));
        }
        catch (Exception e) when (SseAnswerTranslator.Malformed(e))
        {
            // Not the provider's documented shape (duplicate members, a wrong kind): the client gets it as it came.
            return bytes;
        }
    }
}
