-- Audit rows gain an HMAC under the server secret (`mac`), and flag changes a second link to the
-- previous row of the same flag (`flag_prev_hash`) so one flag's rows verify on their own.
-- Rows already written keep their hashes and are marked hash_version 1; after this file the
-- store MACs the prefix of each chain that still verifies and starts the head log (store.py).

ALTER TABLE flag_changes ADD COLUMN flag_prev_hash VARCHAR;
ALTER TABLE flag_changes ADD COLUMN hash_version SMALLINT DEFAULT 1;
ALTER TABLE flag_changes ADD COLUMN mac VARCHAR;
UPDATE flag_changes SET flag_prev_hash = linked.flag_prev_hash
FROM (
    SELECT change_id,
           coalesce(lag(hash) OVER (PARTITION BY flag_key ORDER BY seq), repeat('0', 64)) AS flag_prev_hash
    FROM flag_changes
) AS linked
WHERE linked.change_id = flag_changes.change_id;

ALTER TABLE decisions ADD COLUMN hash_version SMALLINT DEFAULT 1;
ALTER TABLE decisions ADD COLUMN mac VARCHAR;
