-- Double-entry ledger (docs/ledger.md). The invariants live here, not only in C#:
--   * the entries of a ledger transaction sum to zero per currency, checked at commit;
--   * entries and transactions are append-only (corrections are reversing transactions);
--   * a cached balance equals the sum of its account's entries: only the entries trigger may change it.
-- Amounts are signed: debit positive, credit negative.

CREATE TABLE accounts (
    merchant_id text        NOT NULL REFERENCES merchants,
    account_id  text        NOT NULL,
    kind        text        NOT NULL CHECK (kind IN ('credits_cycle', 'credits_bundle', 'receivable', 'usage_revenue',
                                                     'breakage_revenue', 'payments_clearing', 'provider_cost', 'provider_payable')),
    type        text        NOT NULL CHECK (type IN ('asset', 'liability', 'revenue', 'expense')),
    customer_id text,
    currency    char(3)     NOT NULL,
    cached      boolean     NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, account_id),
    UNIQUE (merchant_id, account_id, currency),
    FOREIGN KEY (merchant_id, customer_id) REFERENCES customers,
    CHECK ((customer_id IS NULL) = (kind NOT IN ('credits_cycle', 'credits_bundle', 'receivable')))
);

-- Only customer accounts keep a cached balance row (they are read on every charge); merchant-wide accounts are
-- summed from entries, so reports for different customers never wait on one row.
CREATE TABLE account_balances (
    merchant_id text           NOT NULL,
    account_id  text           NOT NULL,
    balance     numeric(38,10) NOT NULL DEFAULT 0,
    PRIMARY KEY (merchant_id, account_id),
    FOREIGN KEY (merchant_id, account_id) REFERENCES accounts
);

CREATE TABLE ledger_transactions (
    merchant_id    text        NOT NULL REFERENCES merchants,
    transaction_id text        NOT NULL,
    kind           text        NOT NULL,
    reference      text        NOT NULL,
    customer_id    text,
    meter_id       text,
    price_version  integer,
    lineage        jsonb       NOT NULL DEFAULT '{}',
    effective_at   timestamptz NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, transaction_id),
    -- One posting per business event, whatever the application does.
    UNIQUE (merchant_id, kind, reference)
);

CREATE TABLE entries (
    merchant_id    text           NOT NULL,
    entry_id       bigint         GENERATED ALWAYS AS IDENTITY,
    transaction_id text           NOT NULL,
    account_id     text           NOT NULL,
    currency       char(3)        NOT NULL,
    amount         numeric(38,10) NOT NULL CHECK (amount <> 0),
    created_at     timestamptz    NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, entry_id),
    FOREIGN KEY (merchant_id, transaction_id) REFERENCES ledger_transactions,
    FOREIGN KEY (merchant_id, account_id, currency) REFERENCES accounts (merchant_id, account_id, currency)
);
CREATE INDEX entries_transaction ON entries (merchant_id, transaction_id);
CREATE INDEX entries_account ON entries (merchant_id, account_id, entry_id);

CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused (post a reversing transaction instead)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON entries
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON ledger_transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON ledger_transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Checked at commit for every inserted entry: its transaction sums to zero in each currency.
CREATE FUNCTION ledger_check_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT e.currency, sum(e.amount) AS total INTO bad
      FROM entries e
     WHERE e.merchant_id = NEW.merchant_id AND e.transaction_id = NEW.transaction_id
     GROUP BY e.currency
    HAVING sum(e.amount) <> 0
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transaction % of merchant % does not balance: % % left over',
            NEW.transaction_id, NEW.merchant_id, bad.total, bad.currency
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER entries_balanced AFTER INSERT ON entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_check_balanced();

-- Cached balances follow the entries, one UPDATE per statement whatever the number of rows.
CREATE FUNCTION ledger_apply_to_balances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE account_balances b
       SET balance = b.balance + d.delta
      FROM (SELECT merchant_id, account_id, sum(amount) AS delta
              FROM inserted GROUP BY merchant_id, account_id) d
     WHERE b.merchant_id = d.merchant_id AND b.account_id = d.account_id;
    RETURN NULL;
END $$;

CREATE TRIGGER entries_update_balances AFTER INSERT ON entries
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION ledger_apply_to_balances();

-- A cached balance changes only through the trigger above (nesting depth 2) and starts at zero.
CREATE FUNCTION ledger_guard_balances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' AND NEW.balance = 0 THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND pg_trigger_depth() >= 2 AND NEW.merchant_id = OLD.merchant_id AND NEW.account_id = OLD.account_id THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'account_balances is maintained by the ledger: % refused', TG_OP USING ERRCODE = 'restrict_violation';
END $$;

CREATE TRIGGER account_balances_guard BEFORE INSERT OR UPDATE OR DELETE ON account_balances
    FOR EACH ROW EXECUTE FUNCTION ledger_guard_balances();
