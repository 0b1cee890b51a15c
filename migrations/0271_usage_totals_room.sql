-- Usage totals are updated in place by every report (one row per customer, meter and period). An update stays on
-- its page, without a new index entry (HOT), only when the page has room; a full page sent ~25% of these updates
-- to another page with an index entry each. Room is kept on pages written from now on.
--
-- The request indexes stay B-trees led by the merchant: dropping the meter index or making the date index a
-- block-range index would save ~2 index entries per report, but a read would then cost in proportion to other
-- merchants' rows (a block range holds every merchant's rows of those days) or to how rare a filter value is.
ALTER TABLE usage_totals SET (fillfactor = 70);
