-- Ledger history for the export scenario, one chunk per call (psql -v merchant=... -v customers=N -v transactions=T
-- -v first=F -v last=L, after bench/seed.sql made the merchant's N customers): usage postings F..L of T, 4 entries each, as a usage report with a known provider cost
-- posts them (Dr customer credits, Cr usage revenue, Dr provider cost, Cr provider payable; docs/ledger.md), spread
-- over the customers and over the last 30 days. Written straight to the tables, one transaction per chunk, through every
-- ledger trigger: each transaction balances (checked at commit), cached balances follow, and every entry is queued
-- for the sequencer (entry_unsequenced), which numbers them when the service next reads the merchant's ledger.
-- Amounts are tiny, so the customers' 100 credits stay positive.
\set ON_ERROR_STOP on
BEGIN;

INSERT INTO ledger_transactions (merchant_id, transaction_id, kind, reference, customer_id, meter_id, price_version, lineage,
                                 effective_at, created_at)
SELECT :'merchant', format('txn_bench_usage_%s', lpad(i::text, 7, '0')), 'usage', format('req_bench_export_%s', i),
       format('cus_bench_%s', lpad((i % :customers)::text, 4, '0')), 'mtr_bench_tokens', 1,
       jsonb_build_object('request_id', format('req_bench_export_%s', i), 'bench', 'export'),
       now() - make_interval(secs => (:transactions - i) * (2592000.0 / :transactions)),
       now() - make_interval(secs => (:transactions - i) * (2592000.0 / :transactions))
  FROM generate_series(:first, :last) AS i;

INSERT INTO entries (merchant_id, transaction_id, account_id, currency, amount, created_at)
SELECT :'merchant', format('txn_bench_usage_%s', lpad(i::text, 7, '0')), e.account_id, 'USD', e.amount,
       now() - make_interval(secs => (:transactions - i) * (2592000.0 / :transactions))
  FROM generate_series(:first, :last) AS i
 CROSS JOIN LATERAL (SELECT (500 + (i * 31) % 3000) * 0.000005 + (100 + (i * 17) % 900) * 0.000005 AS charge,
                            (500 + (i * 31) % 3000) * 0.0000025 AS cost) AS p
 CROSS JOIN LATERAL (VALUES (format('cus_bench_%s:credits_cycle', lpad((i % :customers)::text, 4, '0')), p.charge),
                            ('usage_revenue', -p.charge),
                            ('provider_cost', p.cost),
                            ('provider_payable', -p.cost)) AS e(account_id, amount);

COMMIT;
