using System.Text.Json;
using System.Text.Json.Serialization;

namespace Lava.Billing.Infrastructure;

/// <summary>
/// A PATCH member that tells "absent" (leave the field alone) from an explicit <c>null</c> (clear it), which a plain
/// nullable cannot: a member missing from the JSON stays <c>default</c> (<see cref="IsSet"/> false).
/// </summary>
[JsonConverter(typeof(OptionalConverterFactory))]
public readonly record struct Optional<T>(bool IsSet, T? Value)
{
    public static Optional<T> Of(T? value) => new(true, value);
}

public sealed class OptionalConverterFactory : JsonConverterFactory
{
    public override bool CanConvert(Type typeToConvert) =>
        typeToConvert.IsGenericType && typeToConvert.GetGenericTypeDefinition() == typeof(Optional<>);

    public override JsonConverter CreateConverter(Type typeToConvert, JsonSerializerOptions options) =>
        (JsonConverter)Activator.CreateInstance(typeof(OptionalConverter<>).MakeGenericType(typeToConvert.GetGenericArguments()[0]))!;

    private sealed class OptionalConverter<T> : JsonConverter<Optional<T>>
    {
        // A JSON null must reach Read: it is the "clear this field" signal.
        public override bool HandleNull => true;

        // The value's own converter is called directly, not through JsonSerializer.Deserialize: a nested Deserialize
        // starts its own JSON path, and a wrong type would be reported at "$" instead of at the field.
        public override Optional<T> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            reader.TokenType == JsonTokenType.Null
                ? Optional<T>.Of(default)
                : Optional<T>.Of(((JsonConverter<T>)options.GetConverter(typeof(T))).Read(ref reader, typeof(T), options));

        public override void Write(Utf8JsonWriter writer, Optional<T> value, JsonSerializerOptions options) =>
            JsonSerializer.Serialize(writer, value.Value, options);
    }
}
