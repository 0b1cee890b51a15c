-- The floor for one usage report: the least a report must write, on tables of its own (schema bench_minimal) with
-- nothing but their keys. Per report: a request row with its stored response, a ledger transaction, three entries,
-- and the customer's balance row locked and updated. No triggers, no secondary index, no foreign key, no sequencer:
-- what PostgreSQL charges for the data itself, so the service's figures can be read as a ratio to it.
-- psql -v customers=N -f bench/pgbench/minimal-schema.sql (run again: starts over).
\set ON_ERROR_STOP on
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS bench_minimal CASCADE;
CREATE SCHEMA bench_minimal;
CREATE TABLE bench_minimal.requests (
    merchant_id    text           NOT NULL,
    request_id     text           NOT NULL,
    customer_id    text           NOT NULL,
    charge_amount  numeric(38,10) NOT NULL,
    transaction_id text           NOT NULL,
    created_at     timestamptz    NOT NULL DEFAULT now(),
    response       text           NOT NULL,
    PRIMARY KEY (merchant_id, request_id)
);
CREATE TABLE bench_minimal.ledger_transactions (
    merchant_id    text        NOT NULL,
    transaction_id text        NOT NULL,
    reference      text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, transaction_id)
);
CREATE TABLE bench_minimal.entries (
    merchant_id    text           NOT NULL,
    entry_id       bigint         GENERATED ALWAYS AS IDENTITY,
    transaction_id text           NOT NULL,
    account_id     text           NOT NULL,
    amount         numeric(38,10) NOT NULL,
    PRIMARY KEY (merchant_id, entry_id)
);
CREATE TABLE bench_minimal.balances (
    merchant_id text           NOT NULL,
    account_id  text           NOT NULL,
    balance     numeric(38,10) NOT NULL,
    PRIMARY KEY (merchant_id, account_id)
);
INSERT INTO bench_minimal.balances (merchant_id, account_id, balance)
SELECT 'mer_minimal', format('cus_bench_%s:credits_cycle', lpad(i::text, 4, '0')), -100
  FROM generate_series(0, :customers - 1) AS i;
ANALYZE bench_minimal.balances;
