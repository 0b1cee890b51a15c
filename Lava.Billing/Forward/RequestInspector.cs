using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Net.Http.Headers;

namespace Lava.Billing.Forward;

/// <summary>What the gateway reads from a request body before forwarding it, and the body it forwards.</summary>
public sealed record InspectedRequest(
    string? Model,
    bool Stream,
    long? MaxOutputTokens,
    long InputTokensEstimate,
    long InputCharacters,
    byte[] Body,
    bool BodyRewritten);

/// <summary>
/// Reads the model, the stream flag and the sizes an estimate needs. The body goes upstream byte for byte, with one
/// exception: a streamed OpenAI chat completion without <c>stream_options.include_usage</c> would report no usage at
/// all, so that one member is added.
/// </summary>
public static class RequestInspector
{
    // A rough, provider-neutral rule: about four characters of text per token.
    public const int CharactersPerToken = 4;

    public static InspectedRequest Inspect(ApiFormat format, Uri upstream, string? contentType, byte[] body)
    {
        var pathModel = format == ApiFormat.GeminiGenerateContent ? GeminiModel(upstream.AbsolutePath) : null;
        var stream = format == ApiFormat.GeminiGenerateContent && upstream.AbsolutePath.Contains(":streamGenerateContent", StringComparison.Ordinal);
        if (!LooksLikeJson(contentType, body) || TryParse(body) is not JsonObject json)
            return new InspectedRequest(pathModel ?? FormModel(contentType, body), stream, null, 0, 0, body, false);

        var model = pathModel ?? String(json, "model");
        stream |= json["stream"] is JsonValue s && s.GetValueKind() == JsonValueKind.True;
        var maxOutput = Long(json, "max_completion_tokens") ?? Long(json, "max_tokens") ?? Long(json, "max_output_tokens")
                        ?? (json["generationConfig"] is JsonObject config ? Long(config, "maxOutputTokens") : null);
        var characters = format == ApiFormat.Speech && String(json, "input") is { } input ? input.EnumerateRunes().LongCount() : 0;
        var estimate = (TextCharacters(json) + CharactersPerToken - 1) / CharactersPerToken;

        var rewritten = false;
        if (format == ApiFormat.OpenAiChat && stream && !upstream.AbsolutePath.EndsWith("/embeddings", StringComparison.Ordinal))
        {
            var options = json["stream_options"] as JsonObject;
            if (options?["include_usage"] is not JsonValue v || v.GetValueKind() != JsonValueKind.True)
            {
                if (options is null) json["stream_options"] = options = new JsonObject();
                options["include_usage"] = true;
                body = Encoding.UTF8.GetBytes(json.ToJsonString());
                rewritten = true;
            }
        }
        return new InspectedRequest(model, stream, maxOutput, estimate, characters, body, rewritten);
    }

    /// <summary><c>/v1beta/models/gemini-2.5-flash:generateContent</c> → <c>gemini-2.5-flash</c>.</summary>
    internal static string? GeminiModel(string path)
    {
        var at = path.LastIndexOf("/models/", StringComparison.Ordinal);
        if (at < 0) return null;
        var rest = path[(at + "/models/".Length)..];
        var colon = rest.IndexOf(':');
        return colon > 0 && Uri.UnescapeDataString(rest[..colon]) is var model && Infrastructure.Http.InputText.IsClean(model) ? model : null;
    }

    /// <summary>Audio uploads are multipart forms; their <c>model</c> field names the price.</summary>
    internal static string? FormModel(string? contentType, byte[] body)
    {
        if (!MediaTypeHeaderValue.TryParse(contentType, out var type) || !type.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase))
            return null;
        var boundary = HeaderUtilities.RemoveQuotes(type.Boundary).Value;
        if (string.IsNullOrEmpty(boundary)) return null;
        try
        {
            var reader = new MultipartReader(boundary, new MemoryStream(body));
            while (reader.ReadNextSectionAsync().GetAwaiter().GetResult() is { } section)
            {
                if (ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition) &&
                    HeaderUtilities.RemoveQuotes(disposition.Name).Equals("model", StringComparison.Ordinal) && !disposition.FileName.HasValue)
                    return new StreamReader(section.Body).ReadToEnd().Trim() is { Length: > 0 and <= 128 } model && Infrastructure.Http.InputText.IsClean(model) ? model : null;
            }
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            // A malformed form: forwarded as it is, the provider will say so.
        }
        return null;
    }

    private static bool LooksLikeJson(string? contentType, byte[] body) =>
        body.Length > 0 && (contentType?.Contains("json", StringComparison.OrdinalIgnoreCase) == true ||
                            (contentType is null && body.AsSpan().TrimStart(" \t\r\n"u8) is [(byte)'{', ..]));

    private static JsonNode? TryParse(byte[] body)
    {
        try
        {
            return JsonNode.Parse(body, documentOptions: new JsonDocumentOptions { MaxDepth = 128, AllowDuplicateProperties = false });
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static string? String(JsonObject json, string name) =>
        json[name] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : null;

    private static long? Long(JsonObject json, string name) =>
        json[name] is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<long>(out var n) && n >= 0 ? n : null;

    /// <summary>Characters of the prompt's text: every string value, except inline binary (data URLs, base64 blobs).</summary>
    private static long TextCharacters(JsonNode? node) => node switch
    {
        JsonObject o => o.Sum(p => p.Key is "model" or "data" ? 0 : TextCharacters(p.Value)),
        JsonArray a => a.Sum(TextCharacters),
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>() is var text && text.StartsWith("data:", StringComparison.Ordinal) ? 0 : text.Length,
        _ => 0,
    };
}
