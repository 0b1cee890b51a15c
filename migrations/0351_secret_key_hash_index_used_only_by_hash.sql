-- The unique index of live keys by hash becomes usable only by a lookup by hash, for the reason migration 0350 gives
-- for three other indexes: its predicate (revoked_at IS NULL) is implied by the posting's check that a reporting key is
-- still live (by merchant and key id), and on a table analysed with a row or two every index ties, so the plan the
-- posting caches read this index whole instead of looking the key up in secret_keys_pkey (ReportPlanFreshLedgerTests).
-- key_hash is NOT NULL, so the index covers the same rows and refuses the same duplicates; authentication's lookup,
-- `key_hash = @Hash AND revoked_at IS NULL`, proves the new predicate.

CREATE UNIQUE INDEX secret_keys_hash_live ON secret_keys (key_hash) INCLUDE (merchant_id, secret_key_id, scope)
 WHERE revoked_at IS NULL AND key_hash IS NOT NULL;
DROP INDEX secret_keys_hash;
ALTER INDEX secret_keys_hash_live RENAME TO secret_keys_hash;
