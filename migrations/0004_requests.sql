-- Usage reports (docs/design.md). A report is stored with the fingerprint of its canonical payload and the exact
-- response it got, in the same database transaction as its ledger posting, so a replay answers byte for byte.

CREATE TABLE requests (
    merchant_id       text           NOT NULL REFERENCES merchants,
    request_id        text           NOT NULL CHECK (request_id ~ '^[ -~]{1,255}$'),
    seq               bigint         GENERATED ALWAYS AS IDENTITY,
    fingerprint       bytea          NOT NULL,
    mode              text           NOT NULL CHECK (mode IN ('customer', 'meter_only', 'billing_disabled')),
    customer_id       text,
    meter_id          text           NOT NULL,
    price_version     integer        NOT NULL,
    input_tokens      bigint         NOT NULL CHECK (input_tokens >= 0),
    output_tokens     bigint         NOT NULL CHECK (output_tokens >= 0),
    input_characters  bigint         NOT NULL CHECK (input_characters >= 0),
    output_characters bigint         NOT NULL CHECK (output_characters >= 0),
    input_seconds     numeric(20,6)  NOT NULL CHECK (input_seconds >= 0),
    output_seconds    numeric(20,6)  NOT NULL CHECK (output_seconds >= 0),
    cost              numeric(38,10) CHECK (cost >= 0),
    charge_amount     numeric(38,10) NOT NULL CHECK (charge_amount >= 0),
    metadata          jsonb          NOT NULL DEFAULT '{}',
    occurred_at       timestamptz    NOT NULL,
    created_at        timestamptz    NOT NULL DEFAULT now(),
    transaction_id    text           NOT NULL,
    status_code       smallint       NOT NULL,
    response          text           NOT NULL,
    PRIMARY KEY (merchant_id, request_id),
    FOREIGN KEY (merchant_id, meter_id) REFERENCES meters,
    FOREIGN KEY (merchant_id, customer_id) REFERENCES customers,
    FOREIGN KEY (merchant_id, transaction_id) REFERENCES ledger_transactions,
    FOREIGN KEY (merchant_id, meter_id, price_version) REFERENCES meter_prices
);
-- Lists go newest first by seq; the filters each get an index that keeps that order.
CREATE INDEX requests_by_seq ON requests (merchant_id, seq DESC);
CREATE INDEX requests_by_customer ON requests (merchant_id, customer_id, seq DESC) WHERE customer_id IS NOT NULL;
CREATE INDEX requests_by_meter ON requests (merchant_id, meter_id, seq DESC);

-- Cumulative usage per (meter, customer, period) for graduated tiers, in base units (tokens, characters, seconds,
-- requests). customer_id '' is meter-only usage. One row per customer and meter: no merchant-wide hot row.
CREATE TABLE usage_totals (
    merchant_id  text          NOT NULL,
    meter_id     text          NOT NULL,
    customer_id  text          NOT NULL,
    period_start timestamptz   NOT NULL,
    quantity     numeric(38,6) NOT NULL CHECK (quantity >= 0),
    PRIMARY KEY (merchant_id, meter_id, customer_id, period_start),
    FOREIGN KEY (merchant_id, meter_id) REFERENCES meters
);
