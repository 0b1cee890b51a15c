-- An entry named twice within one sequence row (entry_ids {5,5}) was refused by nothing: the trigger's test for an entry
-- numbered twice compares a new row with the other rows of its transaction only. Such a row gives one entry two seqs,
-- so an export would list it twice. The function is replaced whole; only its last check changes, which now also counts
-- each new row's distinct entry ids. docs/ledger.md ("The ledger sequence") states the rules.
--
-- Not a CHECK constraint on the column: one (through an immutable function, as a CHECK may not hold a subquery) would
-- test every row on every insert as well, but adding it validates the whole table under a lock, and the trigger already
-- makes the one pass over the new rows this needs: the sequencer pays a sort of a few ids per numbered transaction, a
-- posting nothing.
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
    -- LATERAL with LIMIT: a probe of the transaction's index per new row whatever the table's size. The same pass counts
    -- each new row's distinct entry ids: the overlap test skips the row itself, so a row naming one entry twice within
    -- itself passed it.
    EXECUTE $q$
        SELECT n.merchant_id, n.transaction_id, n.first_seq, d.distinct_entries < cardinality(n.entry_ids) AS within_row
          FROM inserted n
         CROSS JOIN LATERAL (SELECT count(DISTINCT e) AS distinct_entries FROM unnest(n.entry_ids) AS e) d
          LEFT JOIN LATERAL (SELECT true AS shared FROM ledger_sequence x
                              WHERE x.merchant_id = n.merchant_id AND x.transaction_id = n.transaction_id
                                AND x.first_seq <> n.first_seq AND x.entry_ids && n.entry_ids
                              LIMIT 1) x ON true
         WHERE d.distinct_entries < cardinality(n.entry_ids) OR x.shared
         LIMIT 1
        $q$ INTO bad;
    IF bad.within_row THEN
        RAISE EXCEPTION 'ledger_sequence: the row at seq % of merchant % names one entry twice (each of its entries takes one seq)',
            bad.first_seq, bad.merchant_id
            USING ERRCODE = 'unique_violation';
    ELSIF bad.transaction_id IS NOT NULL THEN
        RAISE EXCEPTION 'ledger_sequence: an entry of transaction % of merchant % is numbered twice (two rows of its transaction name it)',
            bad.transaction_id, bad.merchant_id
            USING ERRCODE = 'unique_violation';
    END IF;
    RETURN NULL;
END $$;
