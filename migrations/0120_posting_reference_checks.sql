-- The posting's remaining per-row foreign keys become one check per statement, as the entries' did (0031).
--
-- A usage report fired three foreign-key triggers per row: its request's customer and ledger transaction, and its
-- ledger transaction's merchant. Each is a query of its own that also takes a FOR KEY SHARE lock on the row it finds,
-- and a row lock is a WAL record. Measured with `scripts/bench.sh profile` (batches of 1,000): 3,000 trigger queries
-- per batch, and of the ~6.4 Heap/LOCK WAL records per report, the customer's and the transaction's rows.
-- Now one statement trigger per table checks a statement's rows with set-based queries and locks nothing.
--
-- A check without a lock is as strong as the foreign key it replaces only if what it found cannot go away. Ledger
-- transactions are append-only (0002). Customers and merchants are never deleted (a customer is closed by deleted_at,
-- a soft delete) and their keys never change: the triggers below make that a rule of the database, so a row that
-- existed when a posting checked it still exists when the posting commits, and forever after.
-- The foreign key from requests to meter_prices stays: meters can be deleted for good (a meter never used), and its
-- lock is what makes such a delete wait for, or fail against, a posting that names the meter.

CREATE FUNCTION refuse_delete_or_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are never deleted and their keys never change (ledger postings name them): % refused',
        TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER merchants_kept BEFORE DELETE ON merchants
    FOR EACH ROW EXECUTE FUNCTION refuse_delete_or_key_change();
CREATE TRIGGER merchants_key_kept BEFORE UPDATE OF merchant_id ON merchants
    FOR EACH ROW WHEN (OLD.merchant_id IS DISTINCT FROM NEW.merchant_id) EXECUTE FUNCTION refuse_delete_or_key_change();
CREATE TRIGGER merchants_no_truncate BEFORE TRUNCATE ON merchants
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_delete_or_key_change();
CREATE TRIGGER customers_kept BEFORE DELETE ON customers
    FOR EACH ROW EXECUTE FUNCTION refuse_delete_or_key_change();
CREATE TRIGGER customers_key_kept BEFORE UPDATE OF merchant_id, customer_id ON customers
    FOR EACH ROW WHEN (OLD.merchant_id IS DISTINCT FROM NEW.merchant_id OR OLD.customer_id IS DISTINCT FROM NEW.customer_id)
    EXECUTE FUNCTION refuse_delete_or_key_change();
CREATE TRIGGER customers_no_truncate BEFORE TRUNCATE ON customers
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_delete_or_key_change();

-- A request names an existing customer (when it names one) and an existing ledger transaction of its merchant.
-- Raised as foreign_key_violation, the code the foreign keys raised.
CREATE FUNCTION requests_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT i.merchant_id, i.request_id, i.customer_id INTO bad
      FROM changed i
     WHERE i.customer_id IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM customers c WHERE c.merchant_id = i.merchant_id AND c.customer_id = i.customer_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'request % of merchant % names customer %, which does not exist',
            bad.request_id, bad.merchant_id, bad.customer_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;

    SELECT i.merchant_id, i.request_id, i.transaction_id INTO bad
      FROM changed i
     WHERE NOT EXISTS (SELECT 1 FROM ledger_transactions t
                        WHERE t.merchant_id = i.merchant_id AND t.transaction_id = i.transaction_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'request % of merchant % names ledger transaction %, which does not exist',
            bad.request_id, bad.merchant_id, bad.transaction_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER requests_checked AFTER INSERT ON requests
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION requests_check_references();
-- Requests are not updated by the service; an update by hand is checked the same way.
CREATE TRIGGER requests_checked_on_update AFTER UPDATE ON requests
    REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION requests_check_references();

CREATE FUNCTION ledger_transactions_check_merchant() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT i.merchant_id, i.transaction_id INTO bad
      FROM (SELECT DISTINCT merchant_id, transaction_id FROM inserted) i
     WHERE NOT EXISTS (SELECT 1 FROM merchants m WHERE m.merchant_id = i.merchant_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % names merchant %, which does not exist', bad.transaction_id, bad.merchant_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_transactions_checked AFTER INSERT ON ledger_transactions
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION ledger_transactions_check_merchant();

ALTER TABLE requests DROP CONSTRAINT requests_merchant_id_customer_id_fkey,
                     DROP CONSTRAINT requests_merchant_id_transaction_id_fkey;
ALTER TABLE ledger_transactions DROP CONSTRAINT ledger_transactions_merchant_id_fkey;
