using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lava.Billing.Requests;

/// <summary>
/// A report's response and metadata written by generated code, with the wire options (snake_case names, numbers as
/// numbers, nothing left out): every posted report writes both, and the reflection-driven serializer spent more CPU on
/// them than any other step of the plan. The bytes are those the wire options write (RequestJsonTests).
/// </summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web, PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    NumberHandling = JsonNumberHandling.Strict, DefaultIgnoreCondition = JsonIgnoreCondition.Never, MaxDepth = 32,
    GenerationMode = JsonSourceGenerationMode.Serialization)]
[JsonSerializable(typeof(RestRequest))]
[JsonSerializable(typeof(IReadOnlyDictionary<string, string>))]
public sealed partial class RequestJson : JsonSerializerContext
{
    public static string Response(RestRequest response) => JsonSerializer.Serialize(response, Default.RestRequest);

    /// <summary>The metadata column's text: an object of the pairs in the order the report sent them.</summary>
    public static string Metadata(IReadOnlyDictionary<string, string> metadata) =>
        JsonSerializer.Serialize(metadata, Default.IReadOnlyDictionaryStringString);
}
