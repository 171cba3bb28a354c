-- The control plane on PostgreSQL: the same tables, columns and column order as the DuckDB
-- store's control tables (store/duckdb/migrations 0001-0006), so the portable SQL in
-- store/sqlcontrol.py runs unchanged. Documents are TEXT: their exact JSON is what was hashed.

CREATE TABLE environments (
    key         TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE flags (
    key         TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    archived    BOOLEAN NOT NULL DEFAULT false,
    doc         TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE segments (
    key         TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    doc         TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE metrics (
    key         TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    doc         TEXT NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('admin', 'sdk')),
    environment  TEXT,
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    key_hash     TEXT NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ,
    can_force    BOOLEAN DEFAULT false
);

CREATE TABLE flag_changes (
    change_id       TEXT PRIMARY KEY,
    seq             BIGINT NOT NULL UNIQUE,
    ts              TIMESTAMPTZ NOT NULL,
    environment     TEXT,
    flag_key        TEXT NOT NULL,
    version         INTEGER NOT NULL,
    actor           TEXT NOT NULL,
    action          TEXT NOT NULL,
    before          TEXT,
    after           TEXT,
    reason          TEXT,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL,
    flag_prev_hash  TEXT,
    hash_version    SMALLINT,
    mac             TEXT
);
CREATE INDEX flag_changes_by_flag ON flag_changes (flag_key, seq);

CREATE TABLE plans (
    flag_key     TEXT NOT NULL,
    environment  TEXT NOT NULL,
    version      INTEGER NOT NULL,
    doc          TEXT NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (flag_key, environment)
);

CREATE TABLE decisions (
    decision_id     TEXT PRIMARY KEY,
    seq             BIGINT NOT NULL UNIQUE,
    ts              TIMESTAMPTZ NOT NULL,
    environment     TEXT NOT NULL,
    flag_key        TEXT NOT NULL,
    state           TEXT NOT NULL
                    CHECK (state IN ('continue', 'expand', 'pause', 'rollback', 'promote', 'cleanup')),
    actor           TEXT NOT NULL,
    forced          BOOLEAN NOT NULL,
    reason          TEXT,
    recommendation  TEXT,
    evidence        TEXT,
    sql             TEXT,
    fingerprint     TEXT,
    flag_version    INTEGER,
    rollout_before  TEXT,
    rollout_after   TEXT,
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL,
    hash_version    SMALLINT,
    mac             TEXT
);
CREATE INDEX decisions_by_flag ON decisions (flag_key, seq);

CREATE TABLE change_requests (
    request_id    TEXT PRIMARY KEY,
    flag_key      TEXT NOT NULL,
    environment   TEXT NOT NULL,
    action        TEXT NOT NULL,
    percent       DOUBLE PRECISION,
    reason        TEXT,
    proposed_by   TEXT NOT NULL,
    proposer_id   TEXT NOT NULL,
    proposed_at   TIMESTAMPTZ NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('proposed', 'approved', 'rejected', 'applied')),
    approvals     TEXT NOT NULL,
    required      INTEGER NOT NULL,
    decided_at    TIMESTAMPTZ,
    decision_id   TEXT
);

-- One row per audit chain: a writer appending to a chain locks its row (SELECT … FOR UPDATE)
-- first, so concurrent server processes append one after another and the chain stays linked.
CREATE TABLE audit_chains (
    chain  TEXT PRIMARY KEY
);
INSERT INTO audit_chains VALUES ('flag_changes'), ('decisions');
