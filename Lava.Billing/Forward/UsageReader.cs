using System.Text.Json;

namespace Lava.Billing.Forward;

/// <summary>
/// Watches the upstream response body go by and finds its usage, without holding the stream back: an event stream is
/// read event by event (<see cref="SseUsageReader"/>); a JSON body is copied aside up to a bound and parsed at the end.
/// A JSON body larger than the bound keeps only its tail, where every provider puts its usage.
/// </summary>
public sealed class UsageReader
{
    private const int MaxJsonBytes = 4 * 1024 * 1024;
    private const int TailBytes = 64 * 1024;

    private readonly ApiFormat _format;
    private readonly SseUsageReader? _events;
    private MemoryStream? _json;
    private byte[]? _tail;
    private int _tailLength;
    private NormalizedUsage? _jsonUsage;

    public UsageReader(ApiFormat format, bool eventStream)
    {
        _format = format;
        if (!ApiFormats.ReportsUsage(format)) return;
        if (eventStream) _events = new SseUsageReader(format);
        else _json = new MemoryStream();
    }

    public NormalizedUsage? Usage => _events is not null ? _events.Usage : _jsonUsage;

    /// <summary>True when the usage is the provider's final word, not a partial count from a cut stream.</summary>
    public bool Complete => _events is not null ? _events.Complete : _jsonUsage is not null;

    public long OutputCharacters => _events?.OutputCharacters ?? 0;

    public void Feed(ReadOnlySpan<byte> chunk)
    {
        if (_events is not null)
        {
            _events.Feed(chunk);
            return;
        }
        if (_json is not null && _json.Length + chunk.Length <= MaxJsonBytes)
        {
            _json.Write(chunk);
            return;
        }
        if (_json is not null)
        {
            _tail = new byte[TailBytes];
            AppendTail(_json.GetBuffer().AsSpan(0, (int)_json.Length));
            _json = null;
        }
        if (_tail is not null) AppendTail(chunk);
    }

    /// <summary>Called once the whole body went through: parses what was kept.</summary>
    public void Finish()
    {
        try
        {
            if (_json is { Length: > 0 })
            {
                using var document = JsonDocument.Parse(_json.GetBuffer().AsMemory(0, (int)_json.Length));
                _jsonUsage = UsageJson.FromResponse(_format, document.RootElement);
            }
            else if (_tail is not null)
            {
                _jsonUsage = FromTail(_format, _tail.AsSpan(0, _tailLength));
            }
        }
        catch (JsonException)
        {
            // Not JSON after all: no usage.
        }
        _json = null;
        _tail = null;
    }

    private void AppendTail(ReadOnlySpan<byte> chunk)
    {
        if (chunk.Length >= TailBytes)
        {
            chunk[^TailBytes..].CopyTo(_tail);
            _tailLength = TailBytes;
            return;
        }
        var keep = Math.Min(_tailLength, TailBytes - chunk.Length);
        _tail.AsSpan(_tailLength - keep, keep).CopyTo(_tail);
        chunk.CopyTo(_tail.AsSpan(keep));
        _tailLength = keep + chunk.Length;
    }

    /// <summary>Finds the last <c>"usage":</c> (Gemini: <c>"usageMetadata":</c>) member in a body's tail and reads its object.</summary>
    internal static NormalizedUsage? FromTail(ApiFormat format, ReadOnlySpan<byte> tail)
    {
        var key = format == ApiFormat.GeminiGenerateContent ? "\"usageMetadata\""u8 : "\"usage\""u8;
        var at = tail.LastIndexOf(key);
        if (at < 0) return null;
        var rest = tail[(at + key.Length)..].TrimStart(" \t\r\n"u8);
        if (rest is not [(byte)':', ..]) return null;
        var reader = new Utf8JsonReader(rest[1..].TrimStart(" \t\r\n"u8));
        using var value = JsonDocument.ParseValue(ref reader);
        var usage = value.RootElement;
        if (usage.ValueKind != JsonValueKind.Object) return null;
        return format switch
        {
            ApiFormat.OpenAiChat => UsageJson.OpenAiChat(usage),
            ApiFormat.OpenAiResponses => UsageJson.OpenAiResponses(usage),
            ApiFormat.AnthropicMessages => UsageJson.Anthropic(usage),
            ApiFormat.GeminiGenerateContent => UsageJson.Gemini(usage),
            _ => null,
        };
    }
}
