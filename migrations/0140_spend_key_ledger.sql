-- A spend key's spending is a ledger fact (docs/spend-keys.md, "Where spend comes from"). Each key gets an account of
-- its own, `{spend_key_id}:spend_key`, an expense with a cached balance (its all-time spend); each captured call is a
-- ledger transaction of kind `spend_key_usage` (reference = the charge id): Dr the key's account, Cr provider_payable.
-- spend_key_charges keeps only what the ledger cannot: the holds of calls still running and the requests counted.

ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN (
    'credits_cycle', 'credits_bundle', 'receivable', 'usage_revenue', 'breakage_revenue', 'payments_clearing',
    'provider_cost', 'provider_payable', 'plan_revenue', 'bonus_credit_expense', 'spend_key'));

-- Every key made before this migration, revoked ones too (their history stays readable).
INSERT INTO accounts (merchant_id, account_id, kind, type, currency, cached)
SELECT k.merchant_id, k.spend_key_id || ':spend_key', 'spend_key', 'expense', m.currency, true
  FROM spend_keys k
  JOIN merchants m ON m.merchant_id = k.merchant_id;
INSERT INTO account_balances (merchant_id, account_id)
SELECT merchant_id, spend_key_id || ':spend_key' FROM spend_keys;

-- The calls captured before this migration, posted as they would be now: dated when the call was let through.
WITH txn AS (
    INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, lineage, effective_at)
    SELECT c.merchant_id, 'txn_' || substr(c.charge_id, 5), 'spend_key_usage', c.charge_id,
           jsonb_build_object('spend_key_id', c.spend_key_id, 'charge_id', c.charge_id, 'model', c.model, 'estimated', false),
           c.created_at
      FROM spend_key_charges c
     WHERE c.status = 'captured'
    RETURNING merchant_id, transaction_id, reference
)
INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount)
SELECT txn.merchant_id, txn.transaction_id, e.account_id, a.currency, e.amount
  FROM txn
  JOIN spend_key_charges c ON c.merchant_id = txn.merchant_id AND c.charge_id = txn.reference
 CROSS JOIN LATERAL (VALUES (c.spend_key_id || ':spend_key', c.amount), ('provider_payable', -c.amount)) AS e(account_id, amount)
  JOIN accounts a ON a.merchant_id = txn.merchant_id AND a.account_id = e.account_id
 WHERE c.amount <> 0;

-- A key's spend in a cycle: its usage transactions dated since the cycle began, found by this index without reading
-- the key's older calls; every other posting skips it (partial on the kind).
CREATE INDEX ledger_transactions_spend_key ON ledger_transactions (merchant_id, (lineage->>'spend_key_id'), effective_at)
    WHERE kind = 'spend_key_usage';

-- What a key has spent since `since`, from the ledger: for all time the account's cached balance, else the sum of its
-- entries in the usage transactions dated from `since` on (a charge belongs to the cycle its call was let through in).
CREATE FUNCTION spend_key_spent(p_merchant_id text, p_spend_key_id text, since timestamptz) RETURNS numeric
LANGUAGE sql STABLE STRICT AS $$
    SELECT CASE WHEN since = '-infinity'
                THEN (SELECT b.balance
                        FROM account_balances b
                       WHERE b.merchant_id = p_merchant_id AND b.account_id = p_spend_key_id || ':spend_key')
                ELSE (SELECT coalesce(sum(e.amount), 0)
                        FROM ledger_transactions t
                        JOIN entries e ON e.merchant_id = t.merchant_id AND e.transaction_id = t.transaction_id
                                      AND e.account_id = p_spend_key_id || ':spend_key'
                       WHERE t.merchant_id = p_merchant_id
                         AND t.kind = 'spend_key_usage'
                         AND t.lineage->>'spend_key_id' = p_spend_key_id
                         AND t.effective_at >= since)
           END
$$;

-- A call's record while it runs, so a call whose process died is settled by the crash rule (docs/spend-keys.md):
-- the last known cost of its usage (the prompt's estimate until the stream shows more) and the deadline after which
-- the settle worker takes it for dead. Holds left by earlier versions get ten minutes to be captured by their call.
ALTER TABLE spend_key_charges
    ADD COLUMN usage_amount numeric(28,10) NOT NULL DEFAULT 0 CHECK (usage_amount >= 0 AND usage_amount <= 1000000000000000),
    ADD COLUMN due_at       timestamptz,
    ADD COLUMN estimated    boolean NOT NULL DEFAULT false,
    ADD COLUMN anomaly      text;
UPDATE spend_key_charges SET due_at = now() + interval '10 minutes' WHERE status = 'held';
ALTER TABLE spend_key_charges ADD CONSTRAINT spend_key_charges_due CHECK ((status = 'held') = (due_at IS NOT NULL));
CREATE INDEX spend_key_charges_by_due ON spend_key_charges (due_at) WHERE status = 'held';
