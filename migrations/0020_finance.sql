-- Finance: a gap-free, ever-increasing ledger sequence per merchant, so an export pages by a key that never
-- skips a row, and an index for usage by day. docs/ledger.md ("The ledger sequence") explains the design.

-- Entries committed but not numbered yet. A statement trigger writes here in the posting transaction itself, so a row
-- becomes visible exactly when its entry commits, and never if the posting rolls back. Only the sequencer reads it.
CREATE TABLE entry_unsequenced (
    merchant_id text   NOT NULL,
    entry_id    bigint NOT NULL,
    PRIMARY KEY (merchant_id, entry_id)
);

-- seq is 1, 2, 3 … per merchant with no gap, assigned after commit by the sequencer (one transaction per batch under
-- a per-merchant advisory lock), so a reader that saw seq N has seen every seq below N, now and forever.
CREATE TABLE entry_sequence (
    merchant_id text        NOT NULL,
    seq         bigint      NOT NULL CHECK (seq >= 1),
    entry_id    bigint      NOT NULL,
    numbered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (merchant_id, seq),
    UNIQUE (merchant_id, entry_id),
    FOREIGN KEY (merchant_id, entry_id) REFERENCES entries
);

CREATE TRIGGER entry_sequence_append_only BEFORE UPDATE OR DELETE ON entry_sequence
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER entry_sequence_no_truncate BEFORE TRUNCATE ON entry_sequence
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- One INSERT per posting statement whatever its number of entries; the rows are new keys, never a shared hot row.
CREATE FUNCTION ledger_queue_for_sequencer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO entry_unsequenced (merchant_id, entry_id) SELECT merchant_id, entry_id FROM inserted;
    RETURN NULL;
END $$;

CREATE TRIGGER entries_queue_for_sequencer AFTER INSERT ON entries
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION ledger_queue_for_sequencer();

-- Entries posted before this migration are numbered by the sequencer's first run, in entry_id order.
INSERT INTO entry_unsequenced (merchant_id, entry_id) SELECT merchant_id, entry_id FROM entries;

-- GET /v1/usage reads a time range of one merchant's requests.
CREATE INDEX requests_by_occurred_at ON requests (merchant_id, occurred_at);
