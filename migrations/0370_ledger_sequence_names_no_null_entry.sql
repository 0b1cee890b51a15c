-- A sequence row whose entry_ids holds a NULL gives a seq to no entry: an export would have a hole there. The sequencer
-- never writes one (its ids come from the entries' own keys), but nothing refused one written by hand, and the numbering
-- trigger's own check of a row's entries (count(DISTINCT ...), which leaves NULLs out) refused it as "names one entry
-- twice", which is not what is wrong with it.
--
-- A CHECK constraint, NOT VALID: PostgreSQL tests each new row (array_position finds a NULL, as `= ANY` cannot), and
-- adding it reads none of the rows already there, so once it has its lock it holds it for an instant whatever the
-- ledger's size (it waits for it, as any ALTER TABLE does, behind reads of the table already running, such as an export).
-- Rows written before it are the sequencer's; verify (`sequence_gap_free`) reports a NULL in any row, old or new.
ALTER TABLE ledger_sequence
    ADD CONSTRAINT ledger_sequence_entry_ids_not_null CHECK (array_position(entry_ids, NULL) IS NULL) NOT VALID;
