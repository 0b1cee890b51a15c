-- Fewer index entries per report: every request row added an entry to five B-tree indexes. Two of them served only
-- filters of reads that are rare next to reports, and cost a report what its primary key costs (an index entry is
-- ~110 bytes of WAL, and its share of page splits ~55 more; measured with `scripts/bench.sh profile`).
--
-- requests_by_meter (merchant, meter, seq): the meter filter of the request list and its export. A merchant has a few
-- meters, so a meter's requests are a large share of the merchant's: the list reads requests_by_seq newest first and
-- keeps the meter's rows, and reads past few others. (A meter used rarely reads further; the list pages, and a
-- customer filter still has its index.)
DROP INDEX requests_by_meter;

-- requests_by_occurred_at (merchant, occurred_at): the date range of /v1/usage. A block-range index serves it at
-- nearly no cost per row: per 128 pages, a Bloom filter of the merchants in them and the range of their occurred_at
-- (minmax-multi, so a report with a timestamp far from its neighbours widens one range only). Requests are appended
-- as they arrive, and their timestamps are near their arrival, so a day's requests sit in a few ranges; the read
-- checks each row of those ranges for the merchant and the dates. autosummarize: a filled range is summarised soon
-- (autovacuum's work item), not at the next vacuum; a range not summarised yet is always read.
DROP INDEX requests_by_occurred_at;
CREATE INDEX requests_by_occurred_at ON requests
    USING brin (merchant_id text_bloom_ops, occurred_at timestamptz_minmax_multi_ops) WITH (autosummarize = on);

-- Usage totals are updated in place by every report (one row per customer, meter and period). An update stays on
-- its page, without a new index entry (HOT), only when the page has room; a full page sent ~25% of these updates
-- to another page with an index entry each. Room is kept on pages written from now on.
ALTER TABLE usage_totals SET (fillfactor = 70);
