-- Bounds on every stored amount, balance and quantity, so that whatever the service reads back fits the C# decimal it
-- reads it into. A decimal holds 96 bits of digits (about 7.9e28) whatever its scale, so a numeric(38,10) value fits
-- only below about 7.9e18: 7,930 purchases of a 1e15-credit bundle once left a balance no reader could load.
-- docs/ledger.md ("Bounds") explains the choice:
--   * one amount (a price, a charge, a bundle, a hold, a credit limit): 0 to 1e15 (Money.Max);
--   * a balance, an entry, a usage total: -1e18 to 1e18 (Money.MaxBalance); three balances added stay below 7.9e18.
-- Every constraint is named *_bound: the service maps a violation of one (23514) to 422 amount_out_of_range for the one
-- request that would cross it. NOT VALID, then VALIDATE; the migrator runs a file in one transaction, so the tables stay
-- locked while existing rows are scanned: on a large ledger, apply it at a quiet time (docs/operations.md, upgrades).
-- Columns whose type already keeps them far below (requests' seconds, numeric(20,6)) need no bound of their own.

ALTER TABLE entries ADD CONSTRAINT entries_amount_bound
    CHECK (amount BETWEEN -1000000000000000000 AND 1000000000000000000) NOT VALID;
ALTER TABLE account_balances ADD CONSTRAINT account_balances_balance_bound
    CHECK (balance BETWEEN -1000000000000000000 AND 1000000000000000000) NOT VALID;
ALTER TABLE usage_totals ADD CONSTRAINT usage_totals_quantity_bound
    CHECK (quantity <= 1000000000000000000) NOT VALID;

ALTER TABLE requests ADD CONSTRAINT requests_charge_amount_bound CHECK (charge_amount <= 1000000000000000) NOT VALID,
                     ADD CONSTRAINT requests_cost_bound CHECK (cost <= 1000000000000000) NOT VALID;
ALTER TABLE customers ADD CONSTRAINT customers_credit_limit_bound CHECK (credit_limit <= 1000000000000000) NOT VALID;
ALTER TABLE plans ADD CONSTRAINT plans_amounts_bound CHECK (period_amount <= 1000000000000000) NOT VALID;
ALTER TABLE credit_bundles ADD CONSTRAINT credit_bundles_amounts_bound
    CHECK (cost <= 1000000000000000 AND credit_amount <= 1000000000000000) NOT VALID;
ALTER TABLE holds ADD CONSTRAINT holds_amounts_bound
    CHECK (amount <= 1000000000000000 AND captured_amount BETWEEN 0 AND 1000000000000000) NOT VALID;
ALTER TABLE model_prices ADD CONSTRAINT model_prices_bound
    CHECK (greatest(input_per_1m, cached_input_per_1m, cache_write_per_1m, output_per_1m, characters_per_1m, per_minute)
           <= 1000000000000000) NOT VALID;

-- Tier starts and rates are arrays: every element present and between 0 and 1e15.
CREATE FUNCTION amounts_in_bound(amounts numeric[]) RETURNS boolean LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(bool_and(a IS NOT NULL AND a BETWEEN 0 AND 1000000000000000), true) FROM unnest(amounts) AS a
$$;
ALTER TABLE meter_prices ADD CONSTRAINT meter_prices_tiers_bound
    CHECK (amounts_in_bound(tier_starts) AND amounts_in_bound(tier_rates)) NOT VALID;

ALTER TABLE entries VALIDATE CONSTRAINT entries_amount_bound;
ALTER TABLE account_balances VALIDATE CONSTRAINT account_balances_balance_bound;
ALTER TABLE usage_totals VALIDATE CONSTRAINT usage_totals_quantity_bound;
ALTER TABLE requests VALIDATE CONSTRAINT requests_charge_amount_bound;
ALTER TABLE requests VALIDATE CONSTRAINT requests_cost_bound;
ALTER TABLE customers VALIDATE CONSTRAINT customers_credit_limit_bound;
ALTER TABLE plans VALIDATE CONSTRAINT plans_amounts_bound;
ALTER TABLE credit_bundles VALIDATE CONSTRAINT credit_bundles_amounts_bound;
ALTER TABLE holds VALIDATE CONSTRAINT holds_amounts_bound;
ALTER TABLE model_prices VALIDATE CONSTRAINT model_prices_bound;
ALTER TABLE meter_prices VALIDATE CONSTRAINT meter_prices_tiers_bound;
