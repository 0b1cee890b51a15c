-- Webhook events customer.balance.low, customer.credits.exhausted and hold.expired, recorded like the others by
-- triggers in the transaction of the change they announce (docs/webhooks.md).
--
-- The two balance events are derived from the balance event itself: a trigger on the outbox's
-- customer.wallet.balance.updated rows reads the balances that row carries. So they cost nothing for a merchant
-- without a webhook (the balance event is not written for it), and at most one more read per customer per
-- transaction for one with a webhook; a write happens only when a customer's state flips.

-- Per customer: the low-balance threshold the merchant chose, and what was last announced, so each event fires once
-- per crossing and re-arms when the balance goes back up. A customer without a row has no threshold and no credits
-- yet (credits that were never there cannot run out).
CREATE TABLE customer_balance_alerts (
    merchant_id            text        NOT NULL,
    customer_id            text        NOT NULL,
    -- customer.balance.low fires when the balance (credits remaining − receivable) goes below this; NULL: never.
    low_balance_threshold  numeric(38,10) CHECK (low_balance_threshold BETWEEN -1000000000000000 AND 1000000000000000),
    below_threshold        boolean     NOT NULL DEFAULT false,
    credits_exhausted      boolean     NOT NULL DEFAULT true,
    updated_at             timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, customer_id),
    FOREIGN KEY (merchant_id, customer_id) REFERENCES customers
);

CREATE FUNCTION webhook_balance_alerts() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_credits numeric := (NEW.snapshot->>'cycle_remaining')::numeric + (NEW.snapshot->>'bundle_remaining')::numeric;
    v_balance numeric := v_credits - (NEW.snapshot->>'receivable')::numeric;
    v_alert   customer_balance_alerts;
    v_found   boolean;
BEGIN
    -- The balance trigger holds the customer's balance rows locked, so this read-then-write does not race another
    -- transaction of the same customer.
    SELECT * INTO v_alert FROM customer_balance_alerts WHERE merchant_id = NEW.merchant_id AND customer_id = NEW.customer_id;
    v_found := FOUND;
    IF v_credits > 0 THEN
        IF NOT v_found THEN
            INSERT INTO customer_balance_alerts (merchant_id, customer_id, credits_exhausted)
            VALUES (NEW.merchant_id, NEW.customer_id, false)
            ON CONFLICT (merchant_id, customer_id) DO UPDATE SET credits_exhausted = false, updated_at = now();
        ELSIF v_alert.credits_exhausted THEN
            UPDATE customer_balance_alerts SET credits_exhausted = false, updated_at = now()
             WHERE merchant_id = NEW.merchant_id AND customer_id = NEW.customer_id;
        END IF;
    ELSIF v_found AND NOT v_alert.credits_exhausted THEN
        UPDATE customer_balance_alerts SET credits_exhausted = true, updated_at = now()
         WHERE merchant_id = NEW.merchant_id AND customer_id = NEW.customer_id;
        PERFORM webhook_record(NEW.merchant_id, NEW.customer_id, 'customer.credits.exhausted', NEW.snapshot);
    END IF;
    IF v_found AND v_alert.low_balance_threshold IS NOT NULL THEN
        IF v_balance < v_alert.low_balance_threshold AND NOT v_alert.below_threshold THEN
            UPDATE customer_balance_alerts SET below_threshold = true, updated_at = now()
             WHERE merchant_id = NEW.merchant_id AND customer_id = NEW.customer_id;
            PERFORM webhook_record(NEW.merchant_id, NEW.customer_id, 'customer.balance.low',
                NEW.snapshot || jsonb_build_object('low_balance_threshold', v_alert.low_balance_threshold));
        ELSIF v_balance >= v_alert.low_balance_threshold AND v_alert.below_threshold THEN
            UPDATE customer_balance_alerts SET below_threshold = false, updated_at = now()
             WHERE merchant_id = NEW.merchant_id AND customer_id = NEW.customer_id;
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER webhook_events_balance_alerts AFTER INSERT ON webhook_events
    FOR EACH ROW WHEN (NEW.type = 'customer.wallet.balance.updated')
    EXECUTE FUNCTION webhook_balance_alerts();

-- hold.expired. Nothing changes a hold when its expiry passes (readers compare expires_at with the time), so the
-- dispatcher's sweep notes it: expired_at is set on every active hold past its expiry (so the index of holds still
-- to note stays small), and the trigger below records the event in the sweep's transaction when the merchant had a
-- webhook before the expiry. Every hold of a customer the sweep notes in one transaction goes into one event.
ALTER TABLE holds ADD COLUMN expired_at timestamptz;
CREATE INDEX holds_to_note_expired ON holds (expires_at) WHERE status = 'active' AND expired_at IS NULL;

CREATE FUNCTION webhook_hold_expired() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_hold jsonb := jsonb_build_object('hold_id', NEW.hold_id, 'amount', NEW.amount::text, 'expires_at', NEW.expires_at,
                                       'created_at', NEW.created_at);
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhooks WHERE merchant_id = NEW.merchant_id AND deleted_at IS NULL AND created_at < NEW.expires_at) THEN
        RETURN NULL;
    END IF;
    INSERT INTO webhook_events AS e (merchant_id, customer_id, type, snapshot)
    VALUES (NEW.merchant_id, NEW.customer_id, 'hold.expired',
            jsonb_build_object('customer_id', NEW.customer_id, 'holds', jsonb_build_array(v_hold)))
    ON CONFLICT (merchant_id, xact_id, customer_id, type)
    DO UPDATE SET snapshot = jsonb_set(e.snapshot, '{holds}', (e.snapshot->'holds') || v_hold);
    RETURN NULL;
END $$;

CREATE TRIGGER holds_webhook_expired AFTER UPDATE OF expired_at ON holds
    FOR EACH ROW WHEN (OLD.expired_at IS NULL AND NEW.expired_at IS NOT NULL AND NEW.status = 'active')
    EXECUTE FUNCTION webhook_hold_expired();
