-- Foundation: merchants, their secret keys, meters with versioned prices, customers.
-- Every table's key leads with merchant_id so the schema can be distributed by merchant (docs/design.md, "Ledger").

CREATE TABLE merchants (
    merchant_id text        NOT NULL PRIMARY KEY,
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    currency    char(3)     NOT NULL DEFAULT 'USD',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Keys are looked up by the SHA-256 of the secret (the secret itself is never stored). On a sharded cluster this
-- table is a reference table: auth must find the merchant before it knows the shard.
CREATE TABLE secret_keys (
    merchant_id     text        NOT NULL REFERENCES merchants,
    secret_key_id   text        NOT NULL,
    name            text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    key_hash        bytea       NOT NULL CHECK (length(key_hash) = 32),
    secret_key_hint text        NOT NULL,
    scope           text        NOT NULL DEFAULT 'full' CHECK (scope IN ('full', 'read_only')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    PRIMARY KEY (merchant_id, secret_key_id)
);
CREATE UNIQUE INDEX secret_keys_hash ON secret_keys (key_hash) INCLUDE (merchant_id, secret_key_id, scope) WHERE revoked_at IS NULL;

CREATE TABLE meters (
    merchant_id     text        NOT NULL REFERENCES merchants,
    meter_id        text        NOT NULL,
    meter_slug      text        NOT NULL CHECK (meter_slug ~ '^[a-z0-9][a-z0-9_-]{0,63}$'),
    name            text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    rate_type       text        NOT NULL CHECK (rate_type IN ('fixed', 'percentage')),
    tier_type       text        NOT NULL CHECK (tier_type IN ('tokens_1m', 'characters_1m', 'minutes', 'requests')),
    current_version integer     NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz,
    PRIMARY KEY (merchant_id, meter_id)
);
-- A slug names one live meter; a soft-deleted meter frees its slug.
CREATE UNIQUE INDEX meters_slug ON meters (merchant_id, meter_slug) WHERE deleted_at IS NULL;

-- Every price a meter ever had. Reports record the version they were priced with.
CREATE TABLE meter_prices (
    merchant_id text        NOT NULL,
    meter_id    text        NOT NULL,
    version     integer     NOT NULL CHECK (version >= 1),
    tier_starts numeric[]   NOT NULL,
    tier_rates  numeric[]   NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, meter_id, version),
    FOREIGN KEY (merchant_id, meter_id) REFERENCES meters ON DELETE CASCADE,
    CHECK (cardinality(tier_starts) = cardinality(tier_rates) AND cardinality(tier_starts) BETWEEN 1 AND 100),
    CHECK (tier_starts[1] = 0)
);

CREATE TABLE customers (
    merchant_id  text        NOT NULL REFERENCES merchants,
    customer_id  text        NOT NULL,
    reference_id text,
    name         text,
    email        text,
    phone        text,
    metadata     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    deleted_at   timestamptz,
    PRIMARY KEY (merchant_id, customer_id)
);
CREATE INDEX customers_reference ON customers (merchant_id, reference_id) WHERE reference_id IS NOT NULL;
