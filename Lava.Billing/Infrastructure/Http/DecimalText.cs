using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lava.Billing.Infrastructure.Http;

/// <summary>
/// Reads a decimal from a JSON string (the wire form for money, as the SDK sends it) or a JSON number, exactly: the
/// text is parsed as decimal, never through a double. Anything else is a JsonException the error handler maps to 400.
/// </summary>
public sealed class DecimalTextConverter : JsonConverter<decimal>
{
    public override decimal Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        if (reader.TokenType == JsonTokenType.Number && reader.TryGetDecimal(out var number)) return number;
        if (reader.TokenType == JsonTokenType.String && Money.TryParse(reader.GetString(), out var parsed)) return parsed;
        throw new JsonException("expected a decimal number or a decimal string");
    }

    public override void Write(Utf8JsonWriter writer, decimal value, JsonSerializerOptions options) =>
        writer.WriteStringValue(value.ToString(CultureInfo.InvariantCulture));
}
