using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lava.Billing.Infrastructure.Http;

/// <summary>
/// A decimal sent either as a JSON string (<c>"0.5"</c>, as the SDK sends tier starts and rates) or as a JSON number.
/// Anything else (junk text, exponents in strings, booleans) is a <see cref="JsonException"/>, which the error handler
/// answers 400 naming the field. Opt-in per property: elsewhere numbers are never read from strings.
/// </summary>
public sealed class StringOrNumberDecimalConverter : JsonConverter<decimal>
{
    public override decimal Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        reader.TokenType switch
        {
            JsonTokenType.Number when reader.TryGetDecimal(out var number) => number,
            JsonTokenType.String when Money.TryParse(reader.GetString(), out var parsed) => parsed,
            _ => throw new JsonException("expected a decimal as a JSON string or number"),
        };

    public override void Write(Utf8JsonWriter writer, decimal value, JsonSerializerOptions options) =>
        writer.WriteNumberValue(value);
}
