-- The sequencer's queue holds one row per posting statement (and merchant) instead of one row per entry.
--
-- A usage report writes about two entries, and each entry cost a queue row and its index entry when posted, and a
-- delete of both when numbered: measured with `scripts/bench.sh profile` (batches of 1,000), ~1.3 KB of WAL per report,
-- and the numbering statement was the second costliest statement of a batch. A posting statement of 1,000 reports now
-- writes one queue row naming all its entries, and the sequencer deletes one row per statement.
--
-- What makes numbering gap-free is unchanged (docs/ledger.md, "The ledger sequence"): the trigger writes the queue row
-- in the posting's own transaction, so the row becomes visible exactly when its entries commit and never if the posting
-- rolls back; the sequencer takes rows and numbers their entries in one transaction under the merchant's lock.

ALTER TABLE entry_unsequenced RENAME TO entry_unsequenced_by_entry;
ALTER INDEX entry_unsequenced_pkey RENAME TO entry_unsequenced_by_entry_pkey;

-- entry_ids: the statement's entries of this merchant, at most 10,000 per row (the sequencer's batch), so one row is
-- never much more than one batch. first_entry_id is their smallest id: a key, as every entry belongs to one row only.
CREATE TABLE entry_unsequenced (
    merchant_id    text     NOT NULL,
    first_entry_id bigint   NOT NULL,
    entry_count    integer  NOT NULL,
    entry_ids      bigint[] NOT NULL,
    PRIMARY KEY (merchant_id, first_entry_id),
    CHECK (entry_count = cardinality(entry_ids) AND entry_count BETWEEN 1 AND 10000)
);

-- One INSERT of one row per merchant and 10,000 entries per posting statement; rows are new keys, never a shared row.
CREATE OR REPLACE FUNCTION ledger_queue_for_sequencer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO entry_unsequenced (merchant_id, first_entry_id, entry_count, entry_ids)
    SELECT merchant_id, min(entry_id), count(*), array_agg(entry_id ORDER BY entry_id)
      FROM (SELECT merchant_id, entry_id,
                   (row_number() OVER (PARTITION BY merchant_id ORDER BY entry_id) - 1) / 10000 AS part
              FROM inserted) i
     GROUP BY merchant_id, part;
    RETURN NULL;
END $$;

-- Entries queued before this migration, in rows of 10,000 in entry_id order, so the sequencer numbers them as before.
INSERT INTO entry_unsequenced (merchant_id, first_entry_id, entry_count, entry_ids)
SELECT merchant_id, min(entry_id), count(*), array_agg(entry_id ORDER BY entry_id)
  FROM (SELECT merchant_id, entry_id,
               (row_number() OVER (PARTITION BY merchant_id ORDER BY entry_id) - 1) / 10000 AS part
          FROM entry_unsequenced_by_entry) u
 GROUP BY merchant_id, part;

DROP TABLE entry_unsequenced_by_entry;
