-- Gateway calls, written before the provider is called (in the same transaction as the hold, when one is taken), so a
-- call the provider served is billed even if posting fails or the process dies. docs/gateway.md has the life cycle:
--   pending  the provider may be working; usage_* holds the best known usage so far (the prompt's estimate, then
--            what the stream showed), refreshed while the answer streams, which also pushes next_attempt_at ahead
--   served   the usage to bill is final (exact, or estimated), waiting to be posted
--   posted   the usage report (or gateway transaction) with this request id is in the ledger
--   released nothing was billable (the provider failed or was never reached); the hold was voided
--   refused  posting was refused for good (the meter or customer went away); the hold was voided; finance follows up
-- A settle worker picks up pending calls whose next_attempt_at passed (the process that ran them is gone) and served
-- calls whose posting failed, with FOR UPDATE SKIP LOCKED, so several instances never settle one call twice at once.
CREATE TABLE forward_calls (
    merchant_id      text           NOT NULL REFERENCES merchants,
    request_id       text           NOT NULL CHECK (request_id ~ '^[ -~]{1,255}$'),
    state            text           NOT NULL CHECK (state IN ('pending', 'served', 'posted', 'released', 'refused')),
    mode             text           NOT NULL CHECK (mode IN ('gateway', 'meter_only', 'customer', 'billing_disabled')),
    customer_id      text,
    meter_slug       text,
    hold_id          text,
    -- Where the call went and what it carried, enough to build its report again: provider host, key type (never the
    -- key), model, endpoint path (never the query: a provider key may ride in it), model price version, metadata.
    call             jsonb          NOT NULL,
    input_uncached   bigint         NOT NULL DEFAULT 0 CHECK (input_uncached BETWEEN 0 AND 1000000000000),
    cache_read       bigint         NOT NULL DEFAULT 0 CHECK (cache_read BETWEEN 0 AND 1000000000000),
    cache_write      bigint         NOT NULL DEFAULT 0 CHECK (cache_write BETWEEN 0 AND 1000000000000),
    output_tokens    bigint         NOT NULL DEFAULT 0 CHECK (output_tokens BETWEEN 0 AND 1000000000000),
    input_characters bigint         NOT NULL DEFAULT 0 CHECK (input_characters BETWEEN 0 AND 1000000000000),
    input_seconds    numeric(20,6)  NOT NULL DEFAULT 0 CHECK (input_seconds BETWEEN 0 AND 1000000000),
    provider_cost    numeric(38,10) CHECK (provider_cost BETWEEN 0 AND 1000000000),
    -- The usage is the gateway's estimate, not the provider's final count (a cut stream, a crash, an anomaly).
    estimated        boolean        NOT NULL DEFAULT true,
    -- Why finance should look at this call: the provider reported usage outside the report limits, or it was
    -- settled after a crash. Null for an ordinary call.
    anomaly          text,
    served_at        timestamptz,
    attempts         integer        NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz    NOT NULL,
    last_error       text,
    created_at       timestamptz    NOT NULL,
    updated_at       timestamptz    NOT NULL,
    PRIMARY KEY (merchant_id, request_id),
    CHECK (state = 'pending' OR state = 'released' OR served_at IS NOT NULL)
);
-- What the settle worker scans: only unsettled calls, by when they are due.
CREATE INDEX forward_calls_due ON forward_calls (next_attempt_at) WHERE state IN ('pending', 'served');
