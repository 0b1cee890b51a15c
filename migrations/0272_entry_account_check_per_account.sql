-- The check that an entry's account exists in the entry's currency looks each account up once per statement, not once
-- per entry. A batch of reports writes two entries per report, one of them to usage_revenue: measured with
-- `scripts/bench.sh profile` (batches of 1,000), the check read ~6 buffers per report, one index lookup per entry.
-- What is checked is unchanged (0031): every (merchant, account, currency) the statement's entries name exists.
CREATE OR REPLACE FUNCTION ledger_check_entries() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT i.merchant_id, i.transaction_id, i.currency, sum(i.amount) AS total INTO bad
      FROM inserted i
     GROUP BY i.merchant_id, i.transaction_id, i.currency
    HAVING sum(i.amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % of merchant % does not balance: % % left over',
            bad.transaction_id, bad.merchant_id, bad.total, bad.currency
            USING ERRCODE = 'check_violation';
    END IF;

    -- An entry's account exists and its currency is the account's (was a composite foreign key).
    SELECT i.merchant_id, i.account_id, i.currency INTO bad
      FROM (SELECT DISTINCT merchant_id, account_id, currency FROM inserted) i
     WHERE NOT EXISTS (SELECT 1 FROM accounts a
                        WHERE a.merchant_id = i.merchant_id AND a.account_id = i.account_id AND a.currency = i.currency)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'entry of merchant % names account % in %, which does not exist in that currency',
            bad.merchant_id, bad.account_id, bad.currency
            USING ERRCODE = 'foreign_key_violation';
    END IF;

    -- An entry's ledger transaction exists (was a foreign key).
    SELECT i.merchant_id, i.transaction_id INTO bad
      FROM (SELECT DISTINCT merchant_id, transaction_id FROM inserted) i
     WHERE NOT EXISTS (SELECT 1 FROM ledger_transactions t
                        WHERE t.merchant_id = i.merchant_id AND t.transaction_id = i.transaction_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'entry of merchant % names ledger transaction %, which does not exist',
            bad.merchant_id, bad.transaction_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;
