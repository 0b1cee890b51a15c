using System.Collections.Concurrent;
using Lava.Billing.Meters;

namespace Lava.Billing.Forward;

/// <summary>
/// The model prices and meter prices gateway calls are admitted with, kept between calls: two database round trips fewer
/// on every call's path. Never trusted: the round trip that writes a call's record checks, in the same statements, that
/// its secret key is still live and that the price and meter it was admitted with are still the current ones
/// (<see cref="ForwardCallStore.Assumed"/>); a call that finds one moved forgets it here and is admitted again from the
/// database, so no call is priced with a version that was replaced, or a meter that was deleted, before its record was
/// written (docs/gateway.md).
/// </summary>
public sealed class ForwardLookups(ModelPriceStore prices, MeterStore meters)
{
    private const int Limit = 10_000;

    // A model without a price is kept too (as null): a BYOK call to an unpriced model is as frequent as to a priced one.
    private readonly ConcurrentDictionary<(string MerchantId, string Model), ModelPrice?> _prices = new();
    private readonly ConcurrentDictionary<(string MerchantId, string MeterSlug), MeterPrice> _meters = new();

    /// <summary>The price <paramref name="model"/> is costed with (<see cref="ModelPriceStore.FindCurrentAsync"/>), from memory when known.</summary>
    public async Task<ModelPrice?> PriceAsync(string merchantId, string model, CancellationToken ct)
    {
        if (_prices.TryGetValue((merchantId, model), out var known)) return known;
        var price = await prices.FindCurrentAsync(merchantId, model, ct);
        if (_prices.Count >= Limit) _prices.Clear();
        _prices[(merchantId, model)] = price;
        return price;
    }

    /// <summary>The current price of the live meter with this slug, from memory when known; a missing meter is not kept.</summary>
    public async Task<MeterPrice?> MeterAsync(string merchantId, string meterSlug, CancellationToken ct)
    {
        if (_meters.TryGetValue((merchantId, meterSlug), out var known)) return known;
        var meter = await meters.FindLivePriceAsync(merchantId, meterSlug, ct);
        if (meter is null) return null;
        if (_meters.Count >= Limit) _meters.Clear();
        _meters[(merchantId, meterSlug)] = meter;
        return meter;
    }

    /// <summary>What the call was admitted with moved: read from the database again next time.</summary>
    public void Forget(string merchantId, string? model, string? meterSlug)
    {
        if (model is not null) _prices.TryRemove((merchantId, model), out _);
        if (meterSlug is not null) _meters.TryRemove((merchantId, meterSlug), out _);
    }

    /// <summary>Which meter, at which price version: what the record's check compares with the meter the slug names now.</summary>
    public static string KeyOf(MeterPrice meter) => $"{meter.MeterId}:{meter.Version}";

    /// <summary>Which price row (its model, its owner: the merchant or the defaults, its version); "" for no price.</summary>
    public static string KeyOf(string merchantId, ModelPrice? price) =>
        price is null ? "" : $"{price.Model}:{(price.MerchantOwned ? merchantId : "")}:{price.Version}";
}
