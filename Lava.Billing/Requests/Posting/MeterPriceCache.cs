using System.Collections.Concurrent;
using Lava.Billing.Meters;

namespace Lava.Billing.Requests.Posting;

/// <summary>
/// The live prices of the meters reports name, kept between reports (a database round trip fewer per report). Never
/// trusted: every posting reads each slug's meter id and current version in its lock step and starts over from the
/// database when one moved, so no report is priced with a version that was replaced, or a meter that was deleted,
/// before its transaction began.
/// </summary>
public sealed class MeterPriceCache
{
    private const int Limit = 10_000;

    private readonly ConcurrentDictionary<(string MerchantId, string MeterSlug), MeterPrice> _prices = new();

    /// <summary>
    /// The price of each slug the items name (absent: no live meter has it); <paramref name="fresh"/>: read them all again.
    /// Read from <paramref name="db"/>, the pool the posting takes its own connection from.
    /// </summary>
    public async Task<Dictionary<(string MerchantId, string MeterSlug), MeterPrice>> ResolveAsync(
        IReadOnlyList<ReportItem> items, bool fresh, Npgsql.NpgsqlDataSource db, CancellationToken ct)
    {
        var resolved = new Dictionary<(string MerchantId, string MeterSlug), MeterPrice>();
        var missing = new List<(string MerchantId, string MeterSlug)>();
        foreach (var key in items.Select(i => (i.MerchantId, i.Body.MeterSlug!)).Distinct())
        {
            if (!fresh && _prices.TryGetValue(key, out var cached)) resolved[key] = cached;
            else missing.Add(key);
        }
        if (missing.Count == 0) return resolved;
        var found = await MeterStore.FindLivePricesAsync(missing, db, ct);
        if (_prices.Count + found.Count > Limit) _prices.Clear();
        foreach (var key in missing)
        {
            if (found.TryGetValue(key, out var price)) _prices[key] = resolved[key] = price;
            else _prices.TryRemove(key, out _);
        }
        return resolved;
    }
}
