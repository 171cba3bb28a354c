-- The evidence on PostgreSQL: the contract's columns (as store/duckdb's EVIDENCE_COLUMNS), JSON
-- documents as JSONB, times as TIMESTAMPTZ, the 64-bit identity and payload hashes as BIGINT
-- (their bits: the store reads them back as unsigned). Indexes follow the readout's access
-- path: one environment's flag exposures by unit, its events by name and unit. The identity is
-- unique: a resend acknowledged by another server sharing this database is stored once.

CREATE TABLE exposures (
    event_id            TEXT NOT NULL,
    ts                  TIMESTAMPTZ NOT NULL,
    received_at         TIMESTAMPTZ NOT NULL,
    environment         TEXT NOT NULL,
    flag_key            TEXT NOT NULL,
    flag_version        INTEGER,
    assignment_unit     TEXT NOT NULL,
    unit_id             TEXT NOT NULL,
    assigned_variation  TEXT NOT NULL,
    served_variation    TEXT NOT NULL,
    fallback_reason     TEXT,
    behavior            JSONB,
    ids                 JSONB,
    attributes          JSONB,
    trace_id            TEXT,
    sdk                 TEXT,
    identity            BIGINT NOT NULL,
    payload_hash        BIGINT NOT NULL
);
CREATE UNIQUE INDEX exposures_identity ON exposures (identity);
CREATE INDEX exposures_readout ON exposures (environment, flag_key, unit_id, ts);

CREATE TABLE events (
    event_id         TEXT NOT NULL,
    ts               TIMESTAMPTZ NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL,
    environment      TEXT NOT NULL,
    name             TEXT NOT NULL,
    unit_id          TEXT NOT NULL,
    assignment_unit  TEXT NOT NULL,
    ids              JSONB,
    value            DOUBLE PRECISION,
    properties       JSONB,
    flag_key         TEXT,
    variation        TEXT,
    trace_id         TEXT,
    identity         BIGINT NOT NULL,
    payload_hash     BIGINT NOT NULL
);
CREATE UNIQUE INDEX events_identity ON events (identity);
CREATE INDEX events_readout ON events (environment, name, unit_id, ts);

CREATE TABLE evals (
    event_id           TEXT NOT NULL,
    ts                 TIMESTAMPTZ NOT NULL,
    received_at        TIMESTAMPTZ NOT NULL,
    environment        TEXT NOT NULL,
    unit_id            TEXT,
    trace_id           TEXT,
    span_id            TEXT,
    name               TEXT NOT NULL,
    score              DOUBLE PRECISION NOT NULL,
    label              TEXT,
    evaluator          TEXT NOT NULL,
    evaluator_version  TEXT,
    flag_key           TEXT,
    variation          TEXT,
    comment            TEXT,
    identity           BIGINT NOT NULL,
    payload_hash       BIGINT NOT NULL
);
CREATE UNIQUE INDEX evals_identity ON evals (identity);
CREATE INDEX evals_readout ON evals (environment, name, ts);

CREATE TABLE spans (
    trace_id        TEXT NOT NULL,
    span_id         TEXT NOT NULL,
    parent_span_id  TEXT,
    name            TEXT NOT NULL,
    kind            TEXT,
    start_ts        TIMESTAMPTZ NOT NULL,
    end_ts          TIMESTAMPTZ NOT NULL,
    duration_ms     DOUBLE PRECISION NOT NULL,
    status          TEXT,
    service         TEXT,
    environment     TEXT NOT NULL,
    unit_id         TEXT,
    flag_key        TEXT,
    variation       TEXT,
    gen_ai_model    TEXT,
    input_tokens    BIGINT,
    output_tokens   BIGINT,
    cost_usd        DOUBLE PRECISION,
    attributes      JSONB,
    received_at     TIMESTAMPTZ NOT NULL,
    event_id        TEXT NOT NULL,
    identity        BIGINT NOT NULL,
    payload_hash    BIGINT NOT NULL
);
CREATE UNIQUE INDEX spans_identity ON spans (identity);
CREATE INDEX spans_readout ON spans (environment, trace_id);

CREATE TABLE ingest_segments (
    name        TEXT PRIMARY KEY,
    inserted    BIGINT NOT NULL,
    loaded_at   TIMESTAMPTZ NOT NULL
);
