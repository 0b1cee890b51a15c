using Lava.Billing.Infrastructure;

namespace Lava.Billing.Plans;

/// <summary>A bundle as it will be written: new (inserted) or changed in place.</summary>
public sealed record BundleWrite(string CreditBundleId, string Name, decimal Cost, decimal CreditAmount, int Position);

/// <summary>Everything an update does to a plan's bundles and default top-up bundle, or why it cannot.</summary>
public sealed record BundleEdit(
    IReadOnlyList<BundleWrite> Inserts,
    IReadOnlyList<BundleWrite> Changes,
    IReadOnlyList<string> Deletes,
    string? DefaultBundleId,
    IDictionary<string, string[]> Errors);

/// <summary>
/// Resolves an update's <c>credit_bundles</c> and <c>default_auto_top_up_bundle_id</c> against the plan's live bundles
/// (read under the plan's lock). Pure, so every combination is cheap to test.
/// </summary>
public static class BundleEdits
{
    public sealed record LiveBundle(string CreditBundleId, int Position);

    public static BundleEdit Resolve(IReadOnlyList<LiveBundle> live, string? currentDefault,
        IReadOnlyList<CreditBundleChange>? changes, Optional<string> newDefault, Func<string> newId)
    {
        var errors = new Dictionary<string, string[]>();
        var liveIds = live.Select(b => b.CreditBundleId).ToHashSet(StringComparer.Ordinal);
        var inserts = new List<BundleWrite>();
        var updates = new List<BundleWrite>();
        var deletes = new List<string>();
        var nextPosition = live.Count == 0 ? 0 : live.Max(b => b.Position) + 1;
        for (var i = 0; i < (changes?.Count ?? 0); i++)
        {
            var c = changes![i];
            if (c.CreditBundleId is null)
            {
                inserts.Add(new BundleWrite(newId(), c.Name!, c.Cost!.Value, c.CreditAmount!.Value, nextPosition++));
                continue;
            }
            // Another plan's or merchant's bundle is as unknown here as a made-up id.
            if (!liveIds.Contains(c.CreditBundleId))
                errors[$"credit_bundles[{i}].credit_bundle_id"] = [$"'{c.CreditBundleId}' is not a live credit bundle of this plan"];
            else if (c.IsDeleted == true)
                deletes.Add(c.CreditBundleId);
            else
                updates.Add(new BundleWrite(c.CreditBundleId, c.Name!, c.Cost!.Value, c.CreditAmount!.Value, 0));
        }

        var remaining = liveIds.Except(deletes).ToHashSet(StringComparer.Ordinal);
        if (remaining.Count + inserts.Count > PlanLimits.MaxBundles)
            errors["credit_bundles"] = [$"would leave the plan with more than {PlanLimits.MaxBundles} live bundles"];

        // A deleted default stops being the default rather than pointing at a bundle nobody can buy.
        var defaultId = newDefault.IsSet ? newDefault.Value : currentDefault is not null && remaining.Contains(currentDefault) ? currentDefault : null;
        if (newDefault is { IsSet: true, Value: { } wanted } && !remaining.Contains(wanted))
            errors["default_auto_top_up_bundle_id"] = [$"'{wanted}' is not a live credit bundle of this plan"];

        return new BundleEdit(inserts, updates, deletes, defaultId, errors);
    }
}
