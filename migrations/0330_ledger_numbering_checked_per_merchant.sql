-- What the ledger sequence costs per numbered transaction: its refusal of a renumbering is checked once per merchant
-- and statement instead of twice per new row, and the sequencer's queue row is built with one sort instead of two
-- window passes.
--
-- Measured on a ledger of 200,000 numbered transactions, numbering 2,500 two-entry transactions (one sequencer batch):
-- the statement trigger's two neighbour probes per new row and its join on the transaction's rows cost three quarters
-- of what the numbering itself did, and the join could be planned as a hash of the whole sequence (a scan of every row
-- per batch). docs/ledger.md ("The ledger sequence") states the rules.
--
-- The rule that replaces the neighbour probes is stricter: a merchant's new rows start exactly after its last number
-- and follow each other with no gap and no overlap. That refuses what the probes refused (a row overlapping the one
-- before or after it) and a gap besides, with one probe of the merchant's last row, one count of the rows from the
-- first new one on (so no older row sits among or after the new ones) and a pass over the new rows.
--
-- An entry numbered twice is still refused the same way: a new row may share no entry with another row of its
-- transaction, earlier or in the same statement; now one index probe per new row, never a scan of the table.
CREATE OR REPLACE FUNCTION ledger_sequence_refuse_renumbering() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    -- EXECUTE: planned at every call for the table as it is, as before (a plan cached while the table was small would
    -- still be used when it holds millions of rows).
    EXECUTE $q$
        SELECT n.merchant_id, n.first_seq, n.expected, n.rows_from_first > n.new_rows AS older_rows_after
          FROM (SELECT w.merchant_id, w.first_seq, w.new_rows,
                       coalesce(w.after_previous,
                                (SELECT p.first_seq + cardinality(p.entry_ids) FROM ledger_sequence p
                                  WHERE p.merchant_id = w.merchant_id AND p.first_seq < w.first_seq
                                  ORDER BY p.first_seq DESC LIMIT 1),
                                1) AS expected,
                       CASE WHEN w.after_previous IS NULL
                            THEN (SELECT count(*) FROM ledger_sequence r
                                   WHERE r.merchant_id = w.merchant_id AND r.first_seq >= w.first_seq)
                            ELSE 0 END AS rows_from_first
                  FROM (SELECT merchant_id, first_seq,
                               lag(first_seq + cardinality(entry_ids)) OVER (PARTITION BY merchant_id ORDER BY first_seq) AS after_previous,
                               count(*) OVER (PARTITION BY merchant_id) AS new_rows
                          FROM inserted) w) n
         WHERE n.first_seq <> n.expected OR n.rows_from_first > n.new_rows
         LIMIT 1
        $q$ INTO bad;
    IF bad.first_seq < bad.expected THEN
        RAISE EXCEPTION 'ledger_sequence: seq % of merchant % is numbered twice (a row overlaps the one before it)',
            bad.first_seq, bad.merchant_id
            USING ERRCODE = 'exclusion_violation';
    ELSIF bad.older_rows_after THEN
        RAISE EXCEPTION 'ledger_sequence: merchant % has seqs after % already (new rows follow the last one)',
            bad.merchant_id, bad.first_seq
            USING ERRCODE = 'exclusion_violation';
    ELSIF bad.first_seq > bad.expected THEN
        RAISE EXCEPTION 'ledger_sequence: seqs % to % of merchant % would be skipped (new rows follow the last one with no gap)',
            bad.expected, bad.first_seq - 1, bad.merchant_id
            USING ERRCODE = 'check_violation';
    END IF;
    -- LATERAL with LIMIT: a probe of the transaction's index per new row whatever the table's size.
    EXECUTE $q$
        SELECT n.merchant_id, n.transaction_id
          FROM inserted n
         CROSS JOIN LATERAL (SELECT 1 FROM ledger_sequence x
                              WHERE x.merchant_id = n.merchant_id AND x.transaction_id = n.transaction_id
                                AND x.first_seq <> n.first_seq AND x.entry_ids && n.entry_ids
                              LIMIT 1) x
         LIMIT 1
        $q$ INTO bad;
    IF bad.transaction_id IS NOT NULL THEN
        RAISE EXCEPTION 'ledger_sequence: an entry of transaction % of merchant % is numbered twice (two rows of its transaction name it)',
            bad.transaction_id, bad.merchant_id
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NULL;
END $$;

-- A posting statement of up to 10,000 entries (the service posts at most 128 reports per statement) is one queue row
-- per merchant: one sort of the statement's entries, not two window passes. Only a larger statement is cut, between two
-- transactions, as before.
CREATE OR REPLACE FUNCTION ledger_queue_for_sequencer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF (SELECT count(*) FROM inserted) <= 10000 THEN
        INSERT INTO entry_unsequenced (merchant_id, first_entry_id, entry_count, entry_ids, transaction_ids)
        SELECT merchant_id, min(entry_id), count(*), array_agg(entry_id ORDER BY entry_id), array_agg(transaction_id ORDER BY entry_id)
          FROM inserted
         GROUP BY merchant_id;
        RETURN NULL;
    END IF;
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
