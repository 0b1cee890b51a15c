using Npgsql;

namespace Lava.Billing.Infrastructure;

/// <summary>
/// The database's bounds on amounts, balances and quantities (migration 0040, docs/ledger.md "Bounds"). The database is
/// the enforcer: a write that would cross one fails with 23514 on a constraint named <c>*_bound</c>, and the request
/// that made it gets 422 amount_out_of_range.
/// </summary>
public static class AmountBounds
{
    private static readonly Dictionary<string, string> What = new(StringComparer.Ordinal)
    {
        ["entries_amount_bound"] = "a ledger entry",
        ["account_balances_balance_bound"] = "a customer balance",
        ["usage_totals_quantity_bound"] = "the usage total of its period",
        ["requests_charge_amount_bound"] = "the charge",
        ["requests_cost_bound"] = "the provider cost",
        ["customers_credit_limit_bound"] = "the credit limit",
        ["plans_amounts_bound"] = "the plan's amounts",
        ["credit_bundles_amounts_bound"] = "the bundle's amounts",
        ["holds_amounts_bound"] = "the hold's amounts",
        ["model_prices_bound"] = "a model price",
        ["meter_prices_tiers_bound"] = "a tier",
    };

    /// <summary>Whether <paramref name="e"/> is the database refusing a write that would cross one of these bounds.</summary>
    public static bool IsCrossing(Exception e) =>
        e is PostgresException { SqlState: PostgresErrorCodes.CheckViolation, ConstraintName: { } name } && What.ContainsKey(name);

    /// <summary>What the crossed bound limits, in words for a problem's detail.</summary>
    public static string Describe(Exception e) =>
        e is PostgresException { ConstraintName: { } name } && What.TryGetValue(name, out var what) ? what : "an amount";
}
