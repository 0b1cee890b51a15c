-- Checkout sessions: a merchant asks for a subscription or a credit bundle to be bought; its own payment integration
-- takes the money and completes the session by naming the payment, which posts it (docs/checkout.md).

CREATE TABLE checkout_sessions (
    merchant_id          text        NOT NULL REFERENCES merchants,
    checkout_session_id  text        NOT NULL,
    -- The browser's handle on the session (the test page's address); 190 random bits.
    token                text        NOT NULL,
    checkout_mode        text        NOT NULL CHECK (checkout_mode IN ('subscription', 'credit_bundle')),
    origin_url           text        NOT NULL,
    customer_id          text,
    plan_id              text,
    credit_bundle_id     text,
    -- What the buyer pays, fixed when the session is made: the plan's period amount or the bundle's cost.
    amount               numeric     NOT NULL CHECK (amount >= 0 AND amount <= 1000000000000000),
    -- Created with a test key: the service's test page may complete it.
    test_mode            boolean     NOT NULL,
    status               text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'completed')),
    expires_at           timestamptz NOT NULL,
    -- Set by the completing call before anything is posted, so a retry with the same reference carries on and one
    -- with another reference is refused; a payment completes one session at most.
    payment_reference    text,
    subscription_id      text,
    transaction_id       text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    completed_at         timestamptz,
    PRIMARY KEY (merchant_id, checkout_session_id),
    CHECK ((checkout_mode = 'subscription') = (plan_id IS NOT NULL)),
    CHECK ((checkout_mode = 'credit_bundle') = (credit_bundle_id IS NOT NULL AND customer_id IS NOT NULL)),
    CHECK (status = 'open' OR (payment_reference IS NOT NULL AND completed_at IS NOT NULL AND customer_id IS NOT NULL))
);

CREATE UNIQUE INDEX checkout_sessions_payment_once ON checkout_sessions (merchant_id, payment_reference)
    WHERE payment_reference IS NOT NULL;
-- The test page finds a session by its token alone (the token is random: one row per value).
CREATE INDEX checkout_sessions_by_token ON checkout_sessions (token);
