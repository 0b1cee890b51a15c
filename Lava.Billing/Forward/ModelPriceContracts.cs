using System.Text.Json.Serialization;
using Lava.Billing.Infrastructure;
using Lava.Billing.Infrastructure.Http;

namespace Lava.Billing.Forward;

/// <summary>A new version of a model's provider price. Prices are decimal strings (or numbers) per 1M tokens unless named otherwise.</summary>
public sealed record CreateModelPriceParams
{
    public string? Model { get; init; }
    public string? OwnedBy { get; init; }
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? Input { get; init; }
    /// <summary>Default: the input price (no cache discount).</summary>
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? CachedInput { get; init; }
    /// <summary>Default: the input price.</summary>
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? CacheWrite { get; init; }
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? Output { get; init; }
    /// <summary>Per 1M input characters (text to speech).</summary>
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? Characters { get; init; }
    /// <summary>Per minute of input audio (transcription).</summary>
    [JsonConverter(typeof(StringOrNumberDecimalConverter))] public decimal? PerMinute { get; init; }
}

/// <summary>A model's price as it applies to the calling merchant; <c>source</c> says whose row it is.</summary>
public sealed record RestModelPrice(
    string Object, string Model, int Version, string OwnedBy, string Input, string CachedInput, string CacheWrite,
    string Output, string Characters, string PerMinute, string Source, DateTimeOffset CreatedAt)
{
    public static RestModelPrice From(ModelPrice p) => new("model_price", p.Model, p.Version, p.OwnedBy,
        Money.Format(p.Input), Money.Format(p.CachedInput), Money.Format(p.CacheWrite), Money.Format(p.Output),
        Money.Format(p.Characters), Money.Format(p.Minutes), p.MerchantOwned ? "merchant" : "default", p.CreatedAt);
}

/// <summary>SDK <c>RestModel</c>: an OpenAI-style model entry; <c>created</c> is Unix seconds.</summary>
public sealed record RestModel(string Id, string Object, long Created, string OwnedBy);

/// <summary>SDK <c>RestModelList</c>.</summary>
public sealed record RestModelList(string Object, IReadOnlyList<RestModel> Data);
