-- A checkout session's token is the capability the test page trusts: whoever holds it may complete the session. It
-- is kept from here on as its SHA-256 only, as secret keys are, so a read of the database (a backup, a replica, a
-- support query) no longer yields a token that works. The service hashes the token's UTF-8 bytes; convert_to gives
-- PostgreSQL the same bytes (a cast to bytea would read backslashes as escapes), so existing sessions keep working.

ALTER TABLE checkout_sessions ADD COLUMN token_hash bytea;
UPDATE checkout_sessions SET token_hash = sha256(convert_to(token, 'UTF8'));
ALTER TABLE checkout_sessions ALTER COLUMN token_hash SET NOT NULL;

DROP INDEX checkout_sessions_by_token;
ALTER TABLE checkout_sessions DROP COLUMN token;

-- The test page finds a session by its token's hash alone (the token is random: one row per value).
CREATE INDEX checkout_sessions_by_token_hash ON checkout_sessions (token_hash);
