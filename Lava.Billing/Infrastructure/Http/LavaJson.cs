using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lava.Billing.Infrastructure.Http;

/// <summary>Wire JSON: snake_case names, unknown members ignored, numbers never read from strings, no member named twice.</summary>
public static class LavaJson
{
    public static readonly JsonSerializerOptions Options = Configure(new JsonSerializerOptions(JsonSerializerDefaults.Web));

    public static JsonSerializerOptions Configure(JsonSerializerOptions options)
    {
        options.PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower;
        options.DictionaryKeyPolicy = null;
        options.NumberHandling = JsonNumberHandling.Strict;
        options.DefaultIgnoreCondition = JsonIgnoreCondition.Never;
        options.MaxDepth = 32;
        options.AllowDuplicateProperties = false;
        return options;
    }
}
