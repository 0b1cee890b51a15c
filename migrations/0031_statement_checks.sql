-- The report hot path: the ledger's invariants checked once per statement instead of once per entry.
--
-- Before: every entry fired three row triggers (a deferred balance check running a query at COMMIT, and two foreign
-- key checks, each an SPI query that also takes a FOR KEY SHARE lock on the referenced row). A report writes three
-- entries, so a batch of 1,000 reports ran 9,000 trigger queries, and every concurrent posting locked the same
-- merchant-wide rows (usage_revenue's account row), which PostgreSQL turns into MultiXacts under concurrency.
-- After: one statement trigger checks all of a statement's entries with three set-based queries and takes no lock.
--
-- What makes a lock-free check as strong as the foreign keys it replaces: what it checks against cannot change.
-- Ledger transactions were already append-only; accounts become so below (nothing ever updated or deleted one).

CREATE TRIGGER accounts_append_only BEFORE UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Every statement that inserts entries posts whole, balanced transactions: per (transaction, currency), the
-- statement's own entries sum to zero. Entries are append-only, so by induction every transaction sums to zero after
-- every statement (stricter than the deferred check it replaces, which allowed a transaction to balance only at
-- COMMIT; every posting in the code inserts a transaction's entries in one statement).
CREATE FUNCTION ledger_check_entries() RETURNS trigger LANGUAGE plpgsql AS $$
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
      FROM inserted i
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

CREATE TRIGGER entries_checked AFTER INSERT ON entries
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION ledger_check_entries();

DROP TRIGGER entries_balanced ON entries;
DROP FUNCTION ledger_check_balanced();
ALTER TABLE entries DROP CONSTRAINT entries_merchant_id_transaction_id_fkey,
                    DROP CONSTRAINT entries_merchant_id_account_id_currency_fkey;

-- Implied by requests → meter_prices (merchant, meter, version) → meters → merchants: two checks and two shared row
-- locks per report that proved nothing more.
ALTER TABLE requests DROP CONSTRAINT requests_merchant_id_fkey,
                     DROP CONSTRAINT requests_merchant_id_meter_id_fkey;

-- Usage postings are never counted per customer through this index (auto top-ups and cycle postings are): one index
-- insert fewer per report.
DROP INDEX ledger_transactions_by_customer;
CREATE INDEX ledger_transactions_by_customer ON ledger_transactions (merchant_id, customer_id, kind, effective_at)
    WHERE customer_id IS NOT NULL AND kind <> 'usage';

-- The sequencer numbers the entries the queue names, and only the entries trigger fills the queue, in the entry's own
-- transaction; entries are append-only. The foreign key from entry_sequence to entries checked (and share-locked)
-- each numbered entry again: a third of the sequencer's time, measured on 10,000 entries (300 ms → 195 ms).
ALTER TABLE entry_sequence DROP CONSTRAINT entry_sequence_merchant_id_entry_id_fkey;
