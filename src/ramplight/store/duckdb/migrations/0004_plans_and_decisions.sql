-- Measurement plans (one per flag and environment, versioned like a flag), decisions that carry
-- their evidence in their own hash chain, and API keys that may force an action against the plan.

CREATE TABLE plans (
    flag_key     VARCHAR NOT NULL,
    environment  VARCHAR NOT NULL,
    version      INTEGER NOT NULL,
    doc          JSON NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (flag_key, environment)
);

DROP TABLE decisions;
CREATE TABLE decisions (
    decision_id     VARCHAR PRIMARY KEY,
    seq             BIGINT NOT NULL UNIQUE,
    ts              TIMESTAMPTZ NOT NULL,
    environment     VARCHAR NOT NULL,
    flag_key        VARCHAR NOT NULL,
    state           VARCHAR NOT NULL CHECK (state IN ('continue', 'expand', 'pause', 'rollback', 'promote', 'cleanup')),
    actor           VARCHAR NOT NULL,
    forced          BOOLEAN NOT NULL,
    reason          VARCHAR,
    recommendation  JSON,
    evidence        JSON,
    sql             VARCHAR,
    fingerprint     VARCHAR,
    flag_version    INTEGER,
    rollout_before  JSON,
    rollout_after   JSON,
    prev_hash       VARCHAR NOT NULL,
    hash            VARCHAR NOT NULL
);

ALTER TABLE api_keys ADD COLUMN can_force BOOLEAN DEFAULT FALSE;
