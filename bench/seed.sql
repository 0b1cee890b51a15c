-- Bench data for one merchant (psql -v merchant=... -v customers=N): N customers with their ledger accounts and
-- 100 credits each on the cycle bucket, and one graduated tokens meter (slug "tokens": 5 / 3 / 1 per 1M tokens from
-- 0 / 1M / 10M). Ids are predictable (cus_bench_0000 ...) so the load scripts and pgbench can name them.
-- Written straight to the tables, as the tests' Seed does: the customers and meters APIs are not on every branch.
\set ON_ERROR_STOP on
BEGIN;

INSERT INTO customers (merchant_id, customer_id, name)
SELECT :'merchant', format('cus_bench_%s', lpad(i::text, 4, '0')), format('Bench customer %s', i)
  FROM generate_series(0, :customers - 1) AS i;

WITH created AS (
    INSERT INTO accounts (merchant_id, account_id, kind, type, customer_id, currency, cached)
    SELECT c.merchant_id, c.customer_id || ':' || a.kind, a.kind, a.type, c.customer_id, m.currency, true
      FROM customers c
      JOIN merchants m ON m.merchant_id = c.merchant_id
     CROSS JOIN (VALUES ('credits_cycle', 'liability'), ('credits_bundle', 'liability'), ('receivable', 'asset')) AS a(kind, type)
     WHERE c.merchant_id = :'merchant'
    RETURNING merchant_id, account_id
)
INSERT INTO account_balances (merchant_id, account_id)
SELECT merchant_id, account_id FROM created;

-- A credit grant per customer (Dr payments clearing, Cr credits), as the tests' Seed.GrantAsync posts it.
INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, customer_id, effective_at)
SELECT merchant_id, 'txn_bench_grant_' || customer_id, 'bench_grant', customer_id, customer_id, now()
  FROM customers WHERE merchant_id = :'merchant';
INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount)
SELECT c.merchant_id, 'txn_bench_grant_' || c.customer_id, e.account_id, 'USD', e.amount
  FROM customers c
 CROSS JOIN LATERAL (VALUES ('payments_clearing', 100::numeric), (c.customer_id || ':credits_cycle', -100::numeric)) AS e(account_id, amount)
 WHERE c.merchant_id = :'merchant';

INSERT INTO meters (merchant_id, meter_id, meter_slug, name, rate_type, tier_type)
VALUES (:'merchant', 'mtr_bench_tokens', 'tokens', 'Bench tokens', 'fixed', 'tokens_1m');
INSERT INTO meter_prices (merchant_id, meter_id, version, tier_starts, tier_rates)
VALUES (:'merchant', 'mtr_bench_tokens', 1, '{0,1000000,10000000}', '{5,3,1}');

COMMIT;
ANALYZE customers, accounts, account_balances, ledger_transactions, entries, meters, meter_prices;
