-- The two per-row triggers on account_balances stop costing a report planning and a function call per balance row.
--
-- Measured with `scripts/bench.sh profile` (batches of 1,000): every report changes about one balance row, and
-- 1. the deferred webhook trigger (webhook_balance_changed, fired at COMMIT for each changed row) planned its first
--    query afresh every time: ~40 µs of planning per report against ~5 µs of execution. The posting transaction sets
--    plan_cache_mode locally for its own statements, and a trigger's queries inherit the setting. This
--    function's queries are lookups by key whose parameters are the row's own columns, so a cached generic plan is
--    right for them whatever the table sizes: the function now plans as the server would by default.
-- 2. the guard (ledger_guard_balances) ran a PL/pgSQL call per updated row only to let the ledger's own update through.
--    What it enforces is now checked once per statement, and UPDATE of the key columns is refused by a trigger that
--    never fires for the ledger's update (it sets only balance):
--    - INSERT: still per row (accounts are created rarely; a balance row must start at zero);
--    - UPDATE: allowed only from inside a trigger (the ledger's statement trigger on entries), as before;
--    - UPDATE OF merchant_id or account_id: refused always (before: refused unless from a trigger, and unchanged);
--    - DELETE: refused always, once per statement (before: once per row, so a DELETE of no row passed);
--    - TRUNCATE: refused always (before: not refused, where every other ledger table refused it).

ALTER FUNCTION webhook_balance_changed() SET plan_cache_mode = auto;

CREATE FUNCTION ledger_guard_balances_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND TG_ARGV[0] = 'balance' AND pg_trigger_depth() >= 2 THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'account_balances is maintained by the ledger: % refused', TG_OP USING ERRCODE = 'restrict_violation';
END $$;

DROP TRIGGER account_balances_guard ON account_balances;

CREATE TRIGGER account_balances_guard BEFORE INSERT ON account_balances
    FOR EACH ROW EXECUTE FUNCTION ledger_guard_balances();
CREATE TRIGGER account_balances_guard_update BEFORE UPDATE ON account_balances
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_guard_balances_statement('balance');
CREATE TRIGGER account_balances_guard_key BEFORE UPDATE OF merchant_id, account_id ON account_balances
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_guard_balances_statement('key');
CREATE TRIGGER account_balances_guard_delete BEFORE DELETE ON account_balances
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_guard_balances_statement('delete');
CREATE TRIGGER account_balances_no_truncate BEFORE TRUNCATE ON account_balances
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_guard_balances_statement('truncate');
