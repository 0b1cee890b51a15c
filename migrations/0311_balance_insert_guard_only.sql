-- The row guard of account_balances keeps only what can fire. Since updates, key changes, deletes and truncation are
-- refused per statement (0270_balance_triggers_per_statement.sql), ledger_guard_balances runs from one trigger alone,
-- BEFORE INSERT FOR EACH ROW: its UPDATE branch and its refusal of a DELETE could no longer be reached, and read as if
-- they still guarded something. What is left is the one rule of an insert: a balance row starts at zero.

CREATE OR REPLACE FUNCTION ledger_guard_balances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.balance = 0 THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'account_balances is maintained by the ledger: % refused', TG_OP USING ERRCODE = 'restrict_violation';
END $$;
