using System.Text.Json;
using System.Text.Json.Nodes;

namespace Lava.Billing.Translation;

/// <summary>Small readers over <see cref="JsonNode"/> that treat a missing member, a null and a wrong type alike.</summary>
internal static class JsonNodes
{
    public static string? String(JsonNode? node, string name) =>
        node is JsonObject o && o[name] is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : null;

    public static long? Long(JsonNode? node, string name) =>
        node is JsonObject o && o[name] is JsonValue v && v.GetValueKind() == JsonValueKind.Number && v.TryGetValue<long>(out var n) ? n : null;

    public static bool? Bool(JsonNode? node, string name) =>
        node is JsonObject o && o[name] is JsonValue v ? v.GetValueKind() switch
        {
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => null,
        } : null;

    public static JsonArray? Array(JsonNode? node, string name) => node is JsonObject o ? o[name] as JsonArray : null;

    public static JsonObject? Object(JsonNode? node, string name) => node is JsonObject o ? o[name] as JsonObject : null;

    /// <summary>A member present with a value other than null.</summary>
    public static bool Has(JsonObject o, string name) => o[name] is not null;

    public static JsonNode? Copy(JsonNode? node) => node?.DeepClone();

    /// <summary>A token count, zero when absent (a provider's usage objects leave out what is zero).</summary>
    public static long Count(JsonNode? node, string name) => Math.Max(0, Long(node, name) ?? 0);

    /// <summary>The text of a content that is a string or an array of text parts, joined.</summary>
    public static string TextOf(JsonNode? content, string what)
    {
        if (content is JsonValue v && v.GetValueKind() == JsonValueKind.String) return v.GetValue<string>();
        if (content is null) return "";
        if (content is not JsonArray parts) throw new UntranslatableException($"{what} must be a string or an array of text parts.");
        return string.Concat(parts.Select(p => String(p, "type") == "text" && String(p, "text") is { } text
            ? text
            : throw new UntranslatableException($"{what} may hold only text parts here (found '{String(p, "type") ?? "?"}').")));
    }
}
