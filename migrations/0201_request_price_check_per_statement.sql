-- The foreign key from requests to meter_prices becomes one check per statement that takes the same lock.
--
-- The key ran a query per request row (a batch of 1,000 reports: 1,000 queries of ~8 µs, measured with
-- `scripts/bench.sh profile`), each taking a FOR KEY SHARE lock on the price row, which is nearly always one of a few
-- rows for the whole statement. 0120 replaced the posting's other per-row keys with lock-free checks because what they
-- name can never go away; a price can (a meter never used is deleted for good, its prices with it), so this check keeps
-- the key's lock: it locks each distinct price a statement names FOR KEY SHARE, once, until the posting ends.
--
-- What the key did on the other side is done by triggers on meter_prices:
-- - a DELETE of a price a request names is refused. The delete must first take the row's lock, so it waits for a posting
--   that holds FOR KEY SHARE on it; the check then runs with a snapshot taken after that posting committed, and sees
--   its request. Only under READ COMMITTED does a statement in a trigger see such a commit, so a delete under REPEATABLE
--   READ or SERIALIZABLE is refused outright (the service deletes meters under READ COMMITTED);
-- - prices are never changed (the service only inserts them), so an UPDATE of a key column is refused;
-- - TRUNCATE is refused, as the key refused it.

ALTER TABLE requests DROP CONSTRAINT requests_merchant_id_meter_id_price_version_fkey;

-- The check joins the request's other reference checks (0120), in the function their statement triggers already run:
-- a statement of one report pays one more query, as it paid one key query, and no second trigger.
CREATE OR REPLACE FUNCTION requests_check_references() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad    record;
    named  bigint;
    locked bigint;
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

    -- Each distinct price the statement names, locked FOR KEY SHARE until the posting commits or rolls back (a delete
    -- of the price waits for it, see above), and counted: one it could not lock does not exist.
    SELECT (SELECT count(*) FROM (SELECT DISTINCT merchant_id, meter_id, price_version FROM changed) i),
           (SELECT count(*)
              FROM (SELECT 1 FROM meter_prices p
                     WHERE (p.merchant_id, p.meter_id, p.version) IN (SELECT merchant_id, meter_id, price_version FROM changed)
                       FOR KEY SHARE OF p) l)
      INTO named, locked;
    IF locked < named THEN
        SELECT i.merchant_id, i.request_id, i.meter_id, i.price_version INTO bad
          FROM changed i
         WHERE NOT EXISTS (SELECT 1 FROM meter_prices p
                            WHERE p.merchant_id = i.merchant_id AND p.meter_id = i.meter_id AND p.version = i.price_version)
         LIMIT 1;
        RAISE EXCEPTION 'request % of merchant % names version % of meter %, which does not exist',
            bad.request_id, bad.merchant_id, bad.price_version, bad.meter_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION meter_prices_refuse_delete_if_named() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'a meter price is deleted only under READ COMMITTED, where a request committed meanwhile is seen'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM requests r
                WHERE r.merchant_id = OLD.merchant_id AND r.meter_id = OLD.meter_id AND r.price_version = OLD.version) THEN
        RAISE EXCEPTION 'version % of meter % of merchant % is named by requests: delete refused',
            OLD.version, OLD.meter_id, OLD.merchant_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN OLD;
END $$;

CREATE FUNCTION meter_prices_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'meter prices are never changed (requests name them): % refused', TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER meter_prices_named BEFORE DELETE ON meter_prices
    FOR EACH ROW EXECUTE FUNCTION meter_prices_refuse_delete_if_named();
CREATE TRIGGER meter_prices_key_kept BEFORE UPDATE OF merchant_id, meter_id, version ON meter_prices
    FOR EACH ROW WHEN (OLD.merchant_id IS DISTINCT FROM NEW.merchant_id OR OLD.meter_id IS DISTINCT FROM NEW.meter_id
                       OR OLD.version IS DISTINCT FROM NEW.version)
    EXECUTE FUNCTION meter_prices_refuse_change();
CREATE TRIGGER meter_prices_no_truncate BEFORE TRUNCATE ON meter_prices
    FOR EACH STATEMENT EXECUTE FUNCTION meter_prices_refuse_change();
