-- Each evidence row carries its identity key (64-bit hash of environment, kind, event_id) and
-- the hash of its payload, so the in-memory identity index loads from two integer columns and a
-- resend with a changed payload is a conflict. Rows stored before this have NULLs until the
-- store backfills their identity on open (their payload is unknown: a resend is a duplicate).
ALTER TABLE exposures ADD COLUMN identity UBIGINT;
ALTER TABLE exposures ADD COLUMN payload_hash UBIGINT;
ALTER TABLE events ADD COLUMN identity UBIGINT;
ALTER TABLE events ADD COLUMN payload_hash UBIGINT;
ALTER TABLE evals ADD COLUMN identity UBIGINT;
ALTER TABLE evals ADD COLUMN payload_hash UBIGINT;
