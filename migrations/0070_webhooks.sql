-- Webhooks: merchants' endpoints, a transactional outbox of events, and one delivery row per endpoint and event.
--
-- Events are written by triggers, inside the transaction that makes the change, so an event exists exactly when its
-- change committed, and no application path can forget one. A merchant without a live endpoint gets no event rows:
-- there is nobody to deliver them to.

CREATE TABLE webhooks (
    merchant_id           text        NOT NULL REFERENCES merchants,
    webhook_id            text        NOT NULL,
    name                  text        NOT NULL,
    url                   text        NOT NULL,
    -- NULL: every event type.
    event_types           text[],
    -- The signing secret, sealed by the service (WebhookSecrets): AES-GCM under the operator's key when one is set.
    secret                text        NOT NULL,
    -- After a roll, the previous secret keeps signing too until previous_secret_until.
    previous_secret       text,
    previous_secret_until timestamptz,
    disabled_at           timestamptz,
    disabled_reason       text,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    deleted_at            timestamptz,
    PRIMARY KEY (merchant_id, webhook_id)
);

CREATE TABLE webhook_events (
    merchant_id text        NOT NULL,
    event_seq   bigint      GENERATED ALWAYS AS IDENTITY,
    customer_id text,
    type        text        NOT NULL,
    -- What the trigger knew at commit (balances, the subscription row); the delivered body is built from it.
    snapshot    jsonb       NOT NULL DEFAULT '{}',
    -- The exact body delivered, fixed once when the event is fanned out to endpoints, so every retry and resend
    -- carries the same bytes and signatures stay verifiable.
    payload     text,
    xact_id     xid8        NOT NULL DEFAULT pg_current_xact_id(),
    created_at  timestamptz NOT NULL DEFAULT now(),
    fanned_out_at timestamptz,
    PRIMARY KEY (merchant_id, event_seq)
);
-- At most one event of a type per customer per transaction: a batch of reports is one balance event per customer.
CREATE UNIQUE INDEX webhook_events_once_per_transaction ON webhook_events (merchant_id, xact_id, customer_id, type);
CREATE INDEX webhook_events_to_fan_out ON webhook_events (event_seq) WHERE fanned_out_at IS NULL;

CREATE TABLE webhook_deliveries (
    merchant_id      text        NOT NULL,
    delivery_id      text        NOT NULL,
    webhook_id       text        NOT NULL,
    event_seq        bigint      NOT NULL,
    -- Deliveries of one endpoint with the same order key go out one at a time, in event_seq order.
    order_key        text        NOT NULL,
    status           text        NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         integer     NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    -- A dispatcher that claimed the delivery owns it until then; one that died lets it go by itself.
    lease_until      timestamptz,
    last_attempt_at  timestamptz,
    last_status_code integer,
    last_error       text,
    delivered_at     timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, delivery_id),
    FOREIGN KEY (merchant_id, webhook_id) REFERENCES webhooks,
    FOREIGN KEY (merchant_id, event_seq) REFERENCES webhook_events
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_line ON webhook_deliveries (merchant_id, webhook_id, order_key, event_seq) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (merchant_id, webhook_id, delivery_id);

-- Records an event when the merchant has a live endpoint; a second one of the same type for the same customer in
-- the same transaction is dropped.
CREATE FUNCTION webhook_record(p_merchant text, p_customer text, p_type text, p_snapshot jsonb) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhooks WHERE merchant_id = p_merchant AND deleted_at IS NULL) THEN
        RETURN;
    END IF;
    INSERT INTO webhook_events (merchant_id, customer_id, type, snapshot)
    VALUES (p_merchant, p_customer, p_type, p_snapshot)
    ON CONFLICT (merchant_id, xact_id, customer_id, type) DO NOTHING;
END $$;

CREATE FUNCTION webhook_customer_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM webhook_record(NEW.merchant_id, NEW.customer_id, 'customer.created', '{}');
    ELSIF OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN
        PERFORM webhook_record(NEW.merchant_id, NEW.customer_id, 'customer.deleted', '{}');
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER customers_webhook_events AFTER INSERT OR UPDATE OF deleted_at ON customers
    FOR EACH ROW EXECUTE FUNCTION webhook_customer_changed();

-- The balance trigger below finds a customer's accounts by customer.
CREATE INDEX accounts_by_customer ON accounts (merchant_id, customer_id) WHERE customer_id IS NOT NULL;

-- Runs at commit (deferred), once per changed balance row, so it sees the transaction's final balances. It locks the
-- customer's balance rows in account_id order, the order every writer takes them: two transactions changing one
-- customer's balances therefore record their events in commit order, which is the order they are delivered in.
CREATE FUNCTION webhook_balance_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_customer text;
    v_cycle    numeric;
    v_bundle   numeric;
    v_receivable numeric;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM webhooks WHERE merchant_id = NEW.merchant_id AND deleted_at IS NULL) THEN
        RETURN NULL;
    END IF;
    SELECT customer_id INTO v_customer FROM accounts WHERE merchant_id = NEW.merchant_id AND account_id = NEW.account_id;
    IF v_customer IS NULL OR EXISTS (
        SELECT 1 FROM webhook_events
         WHERE xact_id = pg_current_xact_id() AND merchant_id = NEW.merchant_id
           AND customer_id = v_customer AND type = 'customer.wallet.balance.updated') THEN
        RETURN NULL;
    END IF;
    SELECT coalesce(sum(balance) FILTER (WHERE kind = 'credits_cycle'), 0),
           coalesce(sum(balance) FILTER (WHERE kind = 'credits_bundle'), 0),
           coalesce(sum(balance) FILTER (WHERE kind = 'receivable'), 0)
      INTO v_cycle, v_bundle, v_receivable
      FROM (SELECT a.kind, b.balance
              FROM account_balances b
              JOIN accounts a ON a.merchant_id = b.merchant_id AND a.account_id = b.account_id
             WHERE a.merchant_id = NEW.merchant_id AND a.customer_id = v_customer
             ORDER BY b.account_id
               FOR UPDATE OF b) locked;
    -- Credits are liabilities (credit balances are negative); the receivable is an asset.
    PERFORM webhook_record(NEW.merchant_id, v_customer, 'customer.wallet.balance.updated',
        jsonb_build_object('cycle_remaining', greatest(-v_cycle, 0), 'bundle_remaining', greatest(-v_bundle, 0),
                           'receivable', v_receivable));
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER account_balances_webhook_events AFTER UPDATE ON account_balances
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
    WHEN (OLD.balance IS DISTINCT FROM NEW.balance)
    EXECUTE FUNCTION webhook_balance_changed();

CREATE FUNCTION webhook_subscription_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    v_snapshot jsonb := jsonb_build_object(
        'subscription_id', NEW.subscription_id, 'customer_id', NEW.customer_id, 'plan_id', NEW.plan_id,
        'status', NEW.status, 'cycle_number', NEW.cycle_number, 'cycle_start_at', NEW.cycle_start_at,
        'cycle_end_at', NEW.cycle_end_at, 'cancelled_at', NEW.cancelled_at);
BEGIN
    IF NEW.cycle_number > OLD.cycle_number THEN
        PERFORM webhook_record(NEW.merchant_id, NEW.customer_id, 'subscription.renewed', v_snapshot);
    END IF;
    IF OLD.status = 'active' AND NEW.status = 'cancelled' THEN
        PERFORM webhook_record(NEW.merchant_id, NEW.customer_id, 'subscription.cancelled', v_snapshot);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER subscriptions_webhook_events AFTER UPDATE OF status, cycle_number ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION webhook_subscription_changed();
