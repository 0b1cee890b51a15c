-- The ledger sequence is stored with one row per ledger transaction instead of one row per entry.
--
-- Every entry still has its own seq (1, 2, 3 … per merchant, gap-free, assigned after commit); what changes is how it is
-- stored. A usage report writes about two entries, and each cost an entry_sequence row and two index entries when
-- numbered; an export walked one sequence row and looked up one entry per entry. Now a transaction is numbered as one
-- row: its entries get consecutive seqs in entry_id order, and an entry's seq is first_seq + its position in entry_ids,
-- minus one. docs/ledger.md ("The ledger sequence") explains the design.
--
-- Existing numbers never change (a cursor already handed out stays valid). Numbered per entry, the entries of one
-- transaction were not always consecutive (two posting statements of a merchant committing together could interleave
-- their entry ids), so the per-entry rows are converted run by run: each run of consecutive seqs of one transaction
-- becomes one row, and such a legacy transaction has several rows. A transaction numbered from now on has one row,
-- unless its entries were inserted by several statements whose queue rows the sequencer took in different batches
-- (the application inserts a transaction's entries in one statement): every reader handles several rows.
--
-- Database invariants, as before:
-- - no seq twice: the key (merchant_id, first_seq), and a statement trigger refusing a row whose seqs overlap its
--   neighbour's (a key alone would let first_seq 5 with three entries and first_seq 6 both in);
-- - no entry numbered twice: the same trigger refuses a row naming an entry that another row of its transaction names
--   (an entry belongs to one transaction, so that is every row it could be in);
-- - append-only: UPDATE, DELETE and TRUNCATE are refused as on entries;
-- - gap-free: the sequencer numbers a batch in one statement under the merchant's lock, and verification checks it.

-- Nothing posts or numbers while the sequence changes shape: an old sequencer waits, and then finds its table gone.
LOCK TABLE entry_unsequenced, entry_sequence IN EXCLUSIVE MODE;

-- What is queued is numbered first, exactly as the sequencer numbered it until now (after the merchant's last seq, in
-- entry_id order), so the queue starts empty in its new shape and no legacy transaction is left half numbered.
INSERT INTO entry_sequence (merchant_id, seq, entry_id)
SELECT u.merchant_id, coalesce(l.seq, 0) + row_number() OVER (PARTITION BY u.merchant_id ORDER BY q.entry_id), q.entry_id
  FROM entry_unsequenced u
 CROSS JOIN LATERAL unnest(u.entry_ids) AS q(entry_id)
  LEFT JOIN (SELECT merchant_id, max(seq) AS seq FROM entry_sequence GROUP BY merchant_id) l ON l.merchant_id = u.merchant_id;
DELETE FROM entry_unsequenced;

-- entry_ids in seq order: the n-th has seq first_seq + n - 1.
CREATE TABLE ledger_sequence (
    merchant_id    text     NOT NULL,
    first_seq      bigint   NOT NULL CHECK (first_seq >= 1),
    transaction_id text     NOT NULL,
    entry_ids      bigint[] NOT NULL CHECK (cardinality(entry_ids) >= 1),
    PRIMARY KEY (merchant_id, first_seq)
);
-- An entry's seq is found through its transaction: entries.transaction_id, then this index.
CREATE INDEX ledger_sequence_transaction ON ledger_sequence (merchant_id, transaction_id);

-- Runs of consecutive seqs of one transaction: seq minus the entry's rank within its transaction is constant along a run.
INSERT INTO ledger_sequence (merchant_id, first_seq, transaction_id, entry_ids)
SELECT merchant_id, min(seq), transaction_id, array_agg(entry_id ORDER BY seq)
  FROM (SELECT s.merchant_id, s.seq, s.entry_id, e.transaction_id,
               s.seq - row_number() OVER (PARTITION BY s.merchant_id, e.transaction_id ORDER BY s.seq) AS island
          FROM entry_sequence s
          JOIN entries e ON e.merchant_id = s.merchant_id AND e.entry_id = s.entry_id) n
 GROUP BY merchant_id, transaction_id, island;

DROP TABLE entry_sequence;

CREATE TRIGGER ledger_sequence_append_only BEFORE UPDATE OR DELETE ON ledger_sequence
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_sequence_no_truncate BEFORE TRUNCATE ON ledger_sequence
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Rows sorted by first_seq overlap only if some row overlaps the one before it, so checking each new row against its
-- neighbours on both sides (two probes of the key) keeps every seq unique; a third probe, of the transaction's rows,
-- keeps every entry numbered once. Three probes per numbered transaction, paid by the sequencer, not by a posting.
-- Only the sequencer inserts here, under the merchant's lock, so the rows these checks read are all committed.
CREATE FUNCTION ledger_sequence_refuse_renumbering() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    refused boolean;
BEGIN
    -- EXECUTE: planned at every call for the table as it is. A plan a pooled connection cached while the table was small
    -- (a scan of the whole table per new row) would still be used when it holds millions of rows.
    EXECUTE $q$
        SELECT EXISTS (SELECT 1
                         FROM inserted n
                        CROSS JOIN LATERAL (SELECT p.first_seq, cardinality(p.entry_ids) AS entries FROM ledger_sequence p
                                             WHERE p.merchant_id = n.merchant_id AND p.first_seq < n.first_seq
                                             ORDER BY p.first_seq DESC LIMIT 1) p
                        WHERE p.first_seq + p.entries > n.first_seq)
            OR EXISTS (SELECT 1
                         FROM inserted n
                        CROSS JOIN LATERAL (SELECT f.first_seq FROM ledger_sequence f
                                             WHERE f.merchant_id = n.merchant_id AND f.first_seq > n.first_seq
                                             ORDER BY f.first_seq LIMIT 1) f
                        WHERE n.first_seq + cardinality(n.entry_ids) > f.first_seq)
        $q$ INTO refused;
    IF refused THEN
        RAISE EXCEPTION 'ledger_sequence: a seq is numbered twice (a row overlaps its neighbour)'
            USING ERRCODE = 'exclusion_violation';
    END IF;
    EXECUTE $q$
        SELECT EXISTS (SELECT 1
                         FROM inserted n
                         JOIN ledger_sequence x ON x.merchant_id = n.merchant_id AND x.transaction_id = n.transaction_id
                                               AND x.first_seq <> n.first_seq AND x.entry_ids && n.entry_ids)
        $q$ INTO refused;
    IF refused THEN
        RAISE EXCEPTION 'ledger_sequence: an entry is numbered twice (two rows of its transaction name it)'
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER ledger_sequence_refuse_renumbering AFTER INSERT ON ledger_sequence
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION ledger_sequence_refuse_renumbering();

-- The queue names each entry's transaction beside it (transaction_ids[i] is entry_ids[i]'s), so the sequencer groups
-- a row's entries by transaction without reading entries. A row holds whole transactions: cut after about 10,000
-- entries at a transaction's end, so a row may pass 10,000 by one transaction's entries.
ALTER TABLE entry_unsequenced ADD COLUMN transaction_ids text[] NOT NULL;
ALTER TABLE entry_unsequenced DROP CONSTRAINT entry_unsequenced_check;
ALTER TABLE entry_unsequenced ADD CONSTRAINT entry_unsequenced_check
    CHECK (entry_count = cardinality(entry_ids) AND entry_count = cardinality(transaction_ids) AND entry_count >= 1);

-- A transaction's entries are inserted by one statement, so one queue row names all of them. rank() - 1 over the
-- transactions' smallest entry ids counts the entries of the statement's earlier transactions: the cut falls between
-- transactions.
CREATE OR REPLACE FUNCTION ledger_queue_for_sequencer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO entry_unsequenced (merchant_id, first_entry_id, entry_count, entry_ids, transaction_ids)
    SELECT merchant_id, min(entry_id), count(*), array_agg(entry_id ORDER BY entry_id), array_agg(transaction_id ORDER BY entry_id)
      FROM (SELECT merchant_id, entry_id, transaction_id,
                   (rank() OVER (PARTITION BY merchant_id ORDER BY first_of_transaction) - 1) / 10000 AS part
              FROM (SELECT merchant_id, entry_id, transaction_id,
                           min(entry_id) OVER (PARTITION BY merchant_id, transaction_id) AS first_of_transaction
                      FROM inserted) t) i
     GROUP BY merchant_id, part;
    RETURN NULL;
END $$;
