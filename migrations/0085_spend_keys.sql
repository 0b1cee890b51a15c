-- Spend keys: provider-style keys (lava_sk_…) a merchant hands to an AI tool, each with its own limits. Only the
-- SHA-256 of the key is kept. What a key has spent and how many calls it made are not counters on this row: they are
-- the sum and count of its rows in spend_key_charges, so nothing here can drift from the calls themselves.
CREATE TABLE spend_keys (
    merchant_id          text        NOT NULL REFERENCES merchants,
    spend_key_id         text        NOT NULL,
    name                 text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    key_hash             bytea       NOT NULL,
    key_preview          text        NOT NULL,
    status               text        NOT NULL CHECK (status IN ('active', 'paused')),
    request_shape        text        NOT NULL CHECK (request_shape IN ('openai', 'anthropic')),
    allowed_models       text[],
    allowed_providers    text[],
    spend_limit_amount   numeric(28,10) CHECK (spend_limit_amount > 0 AND spend_limit_amount <= 1000000000000000),
    spend_limit_cycle    text        CHECK (spend_limit_cycle IN ('daily', 'weekly', 'monthly', 'total')),
    request_limit_count  bigint      CHECK (request_limit_count > 0),
    request_limit_cycle  text        CHECK (request_limit_cycle IN ('daily', 'weekly', 'monthly', 'total')),
    rate_limit_rpm       integer     CHECK (rate_limit_rpm > 0),
    rate_limit_burst     integer     CHECK (rate_limit_burst > 0),
    -- The rate limit's token bucket, kept here so every instance draws from the same one (under the row lock).
    rate_tokens          numeric(20,6),
    rate_refilled_at     timestamptz,
    expires_at           timestamptz,
    last_used_at         timestamptz,
    revoked_at           timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, spend_key_id),
    CHECK ((spend_limit_amount IS NULL) = (spend_limit_cycle IS NULL)),
    CHECK ((request_limit_count IS NULL) = (request_limit_cycle IS NULL)),
    CHECK (rate_limit_burst IS NULL OR rate_limit_rpm IS NOT NULL)
);
-- A key is found by its hash before its merchant is known (the gateway's authentication). Unique per merchant, so the
-- table stays distributable by merchant_id; across merchants, two keys with one SHA-256 of 32 random bytes do not occur.
CREATE UNIQUE INDEX spend_keys_key_hash ON spend_keys (merchant_id, key_hash);
CREATE INDEX spend_keys_by_hash ON spend_keys (key_hash);

-- One row per call made with a spend key: a hold for the call's worst case while it runs ('held'), the real cost once
-- it is known ('captured'), or nothing when the call failed ('released'). A key's spend in a cycle is the sum of its
-- held and captured amounts since the cycle began; its requests are the count of the rows not released.
CREATE TABLE spend_key_charges (
    merchant_id     text           NOT NULL,
    charge_id       text           NOT NULL,
    spend_key_id    text           NOT NULL,
    status          text           NOT NULL CHECK (status IN ('held', 'captured', 'released')),
    held_amount     numeric(28,10) NOT NULL CHECK (held_amount >= 0 AND held_amount <= 1000000000000000),
    amount          numeric(28,10) CHECK (amount >= 0 AND amount <= 1000000000000000),
    model           text,
    created_at      timestamptz    NOT NULL,
    settled_at      timestamptz,
    PRIMARY KEY (merchant_id, charge_id),
    FOREIGN KEY (merchant_id, spend_key_id) REFERENCES spend_keys (merchant_id, spend_key_id),
    CHECK ((status = 'captured') = (amount IS NOT NULL))
);

CREATE INDEX spend_key_charges_by_key ON spend_key_charges (merchant_id, spend_key_id, created_at);

-- Where a limit's cycle began at a moment: UTC day, ISO week (Monday), UTC calendar month, or never for 'total'.
-- The one place this rule lives: limits and the reported current_spend / current_requests both read it.
CREATE FUNCTION spend_cycle_start(cycle text, at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE cycle
               WHEN 'daily'   THEN date_trunc('day',   at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
               WHEN 'weekly'  THEN date_trunc('week',  at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
               WHEN 'monthly' THEN date_trunc('month', at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
               ELSE '-infinity'::timestamptz
           END
$$;

-- Where that cycle ends (when a limit refused now will next allow a call); null for 'total', which never resets.
CREATE FUNCTION spend_cycle_end(cycle text, at timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT spend_cycle_start(cycle, at) + CASE cycle
                                              WHEN 'daily'   THEN interval '1 day'
                                              WHEN 'weekly'  THEN interval '1 week'
                                              WHEN 'monthly' THEN interval '1 month'
                                          END
$$;
