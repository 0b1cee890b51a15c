-- Three secondary indexes become usable only by the queries that filter the column they exist for, so that the posting's
-- lookups by key cannot choose them, whatever the statistics say.
--
-- The posting runs the plan PostgreSQL caches per connection for its reads once their tables have settled statistics,
-- including a table analysed while empty and still empty (a ledger whose merchants sell no plans has no subscriptions,
-- plan meters or bundles). On a table analysed empty every index is estimated at one row, and the costs tie: the cached
-- plans then looked up a customer's active subscription by a whole scan of subscriptions_due (its predicate, status =
-- 'active', is implied by the lookup's own condition, and the index's order wins the tie), a plan's meters through
-- plan_meters_by_meter by merchant only, and a bundle through credit_bundles_by_plan by merchant only. Such a plan stays
-- cached while the table fills, until the posting notices the rows written.
--
-- Each index gets a predicate that holds for every row (the columns are NOT NULL), which PostgreSQL can prove only from a
-- condition on that column: `cycle_end_at <= $1` (the renewal sweep), `meter_id = $1`, `plan_id = $1` (a strict
-- operator implies IS NOT NULL). The lookups by key name none of them, and the one index left is the one of their key.
-- The indexes hold the same rows as before. ReportPlanEmptyTablesTests holds the cached plans on such a ledger.

DROP INDEX subscriptions_due;
CREATE INDEX subscriptions_due ON subscriptions (cycle_end_at) WHERE status = 'active' AND cycle_end_at IS NOT NULL;

DROP INDEX plan_meters_by_meter;
CREATE INDEX plan_meters_by_meter ON plan_meters (merchant_id, meter_id) WHERE meter_id IS NOT NULL;

DROP INDEX credit_bundles_by_plan;
CREATE INDEX credit_bundles_by_plan ON credit_bundles (merchant_id, plan_id, position) WHERE plan_id IS NOT NULL;
