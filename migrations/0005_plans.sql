-- Plans, subscriptions, credit bundles and holds: who can pay for what, kept in the same ledger.

-- Two more merchant-wide accounts: the part of a payment that is not credit (plan fees, bundle margins) and
-- credits given beyond what was paid (bonus credit on a bundle).
ALTER TABLE accounts DROP CONSTRAINT accounts_kind_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN (
    'credits_cycle', 'credits_bundle', 'receivable', 'usage_revenue', 'breakage_revenue', 'payments_clearing',
    'provider_cost', 'provider_payable', 'plan_revenue', 'bonus_credit_expense'));
INSERT INTO accounts (merchant_id, account_id, kind, type, currency, cached)
SELECT m.merchant_id, a.kind, a.kind, a.type, m.currency, false
  FROM merchants m, (VALUES ('plan_revenue', 'revenue'), ('bonus_credit_expense', 'expense')) AS a(kind, type)
ON CONFLICT DO NOTHING;

-- How much overage (receivable) a customer may run up before work is refused up front (holds, gateway).
ALTER TABLE customers ADD COLUMN credit_limit numeric(38,10) NOT NULL DEFAULT 0 CHECK (credit_limit >= 0);

CREATE TABLE plans (
    merchant_id          text           NOT NULL REFERENCES merchants,
    plan_id              text           NOT NULL,
    name                 text           NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    period_amount        numeric(38,10) NOT NULL CHECK (period_amount >= 0),
    included_credit      numeric(38,10) NOT NULL CHECK (included_credit >= 0 AND included_credit <= period_amount),
    billing_interval     text           NOT NULL CHECK (billing_interval IN ('day', 'week', 'month', 'year')),
    rollover_type        text           NOT NULL DEFAULT 'none' CHECK (rollover_type IN ('full', 'none')),
    bundle_rollover_type text           NOT NULL DEFAULT 'none' CHECK (bundle_rollover_type IN ('full', 'none')),
    default_auto_top_up_bundle_id text,
    created_at           timestamptz    NOT NULL DEFAULT now(),
    updated_at           timestamptz    NOT NULL DEFAULT now(),
    deleted_at           timestamptz,
    PRIMARY KEY (merchant_id, plan_id)
);

CREATE TABLE plan_meters (
    merchant_id text NOT NULL,
    plan_id     text NOT NULL,
    meter_id    text NOT NULL,
    PRIMARY KEY (merchant_id, plan_id, meter_id),
    FOREIGN KEY (merchant_id, plan_id) REFERENCES plans ON DELETE CASCADE,
    FOREIGN KEY (merchant_id, meter_id) REFERENCES meters
);
CREATE INDEX plan_meters_by_meter ON plan_meters (merchant_id, meter_id);

CREATE TABLE credit_bundles (
    merchant_id      text           NOT NULL,
    credit_bundle_id text           NOT NULL,
    plan_id          text           NOT NULL,
    name             text           NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    cost             numeric(38,10) NOT NULL CHECK (cost >= 0),
    credit_amount    numeric(38,10) NOT NULL CHECK (credit_amount > 0),
    position         integer        NOT NULL,
    created_at       timestamptz    NOT NULL DEFAULT now(),
    deleted_at       timestamptz,
    PRIMARY KEY (merchant_id, credit_bundle_id),
    FOREIGN KEY (merchant_id, plan_id) REFERENCES plans
);
CREATE INDEX credit_bundles_by_plan ON credit_bundles (merchant_id, plan_id, position);

CREATE TABLE subscriptions (
    merchant_id           text        NOT NULL,
    subscription_id       text        NOT NULL,
    customer_id           text        NOT NULL,
    plan_id               text        NOT NULL,
    status                text        NOT NULL CHECK (status IN ('active', 'cancelled')),
    auto_top_up_bundle_id text,
    started_at            timestamptz NOT NULL,
    cycle_number          integer     NOT NULL CHECK (cycle_number >= 1),
    cycle_start_at        timestamptz NOT NULL,
    cycle_end_at          timestamptz NOT NULL CHECK (cycle_end_at > cycle_start_at),
    cancel_at_cycle_end   boolean     NOT NULL DEFAULT false,
    cancelled_at          timestamptz,
    created_at            timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, subscription_id),
    FOREIGN KEY (merchant_id, customer_id) REFERENCES customers,
    FOREIGN KEY (merchant_id, plan_id) REFERENCES plans,
    FOREIGN KEY (merchant_id, auto_top_up_bundle_id) REFERENCES credit_bundles
);
-- One active subscription per customer, whatever races.
CREATE UNIQUE INDEX subscriptions_one_active ON subscriptions (merchant_id, customer_id) WHERE status = 'active';
-- The cycle processor finds what is due without scanning every subscription.
CREATE INDEX subscriptions_due ON subscriptions (cycle_end_at) WHERE status = 'active';

-- Reservations of a customer's available funds before work runs. Not ledger postings: no money moves until a
-- report captures the hold. Expired holds simply stop counting.
CREATE TABLE holds (
    merchant_id     text           NOT NULL,
    hold_id         text           NOT NULL,
    customer_id     text           NOT NULL,
    amount          numeric(38,10) NOT NULL CHECK (amount > 0),
    status          text           NOT NULL CHECK (status IN ('active', 'captured', 'voided')),
    expires_at      timestamptz    NOT NULL,
    captured_amount numeric(38,10),
    request_id      text,
    created_at      timestamptz    NOT NULL DEFAULT now(),
    closed_at       timestamptz,
    PRIMARY KEY (merchant_id, hold_id),
    FOREIGN KEY (merchant_id, customer_id) REFERENCES customers
);
CREATE INDEX holds_active ON holds (merchant_id, customer_id, expires_at) WHERE status = 'active';

-- Idempotent bundle purchases: the Idempotency-Key is the ledger reference, the fingerprint tells replays from misuse.
CREATE TABLE bundle_purchases (
    merchant_id      text        NOT NULL,
    idempotency_key  text        NOT NULL,
    purchase_id      text        NOT NULL,
    credit_bundle_id text        NOT NULL,
    customer_id      text        NOT NULL,
    transaction_id   text        NOT NULL,
    response         text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, idempotency_key),
    FOREIGN KEY (merchant_id, credit_bundle_id) REFERENCES credit_bundles,
    FOREIGN KEY (merchant_id, customer_id) REFERENCES customers,
    FOREIGN KEY (merchant_id, transaction_id) REFERENCES ledger_transactions
);

-- Auto top-ups and cycle postings are counted per customer.
CREATE INDEX ledger_transactions_by_customer ON ledger_transactions (merchant_id, customer_id, kind, effective_at)
    WHERE customer_id IS NOT NULL;

-- A report may capture a hold it was priced against.
ALTER TABLE requests ADD COLUMN hold_id text;
