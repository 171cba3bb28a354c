-- Control plane and evidence store in one embedded DuckDB file (DESIGN.md §2).

CREATE TABLE environments (
    key         VARCHAR PRIMARY KEY,
    name        VARCHAR NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE flags (
    key         VARCHAR PRIMARY KEY,
    version     INTEGER NOT NULL,
    archived    BOOLEAN NOT NULL DEFAULT false,
    doc         JSON NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE segments (
    key         VARCHAR PRIMARY KEY,
    version     INTEGER NOT NULL,
    doc         JSON NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);

CREATE TABLE api_keys (
    id           VARCHAR PRIMARY KEY,
    kind         VARCHAR NOT NULL CHECK (kind IN ('admin', 'sdk')),
    environment  VARCHAR,
    name         VARCHAR NOT NULL,
    prefix       VARCHAR NOT NULL,
    key_hash     VARCHAR NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ
);

CREATE TABLE exposures (
    event_id            VARCHAR PRIMARY KEY,
    ts                  TIMESTAMPTZ NOT NULL,
    received_at         TIMESTAMPTZ NOT NULL,
    environment         VARCHAR NOT NULL,
    flag_key            VARCHAR NOT NULL,
    flag_version        INTEGER,
    assignment_unit     VARCHAR NOT NULL,
    unit_id             VARCHAR NOT NULL,
    assigned_variation  VARCHAR NOT NULL,
    served_variation    VARCHAR NOT NULL,
    fallback_reason     VARCHAR,
    behavior            JSON,
    ids                 JSON,
    attributes          JSON,
    trace_id            VARCHAR,
    sdk                 VARCHAR
);

CREATE TABLE events (
    event_id         VARCHAR PRIMARY KEY,
    ts               TIMESTAMPTZ NOT NULL,
    received_at      TIMESTAMPTZ NOT NULL,
    environment      VARCHAR NOT NULL,
    name             VARCHAR NOT NULL,
    unit_id          VARCHAR NOT NULL,
    assignment_unit  VARCHAR NOT NULL,
    ids              JSON,
    value            DOUBLE,
    properties       JSON,
    flag_key         VARCHAR,
    variation        VARCHAR,
    trace_id         VARCHAR
);

CREATE TABLE evals (
    event_id           VARCHAR PRIMARY KEY,
    ts                 TIMESTAMPTZ NOT NULL,
    received_at        TIMESTAMPTZ NOT NULL,
    environment        VARCHAR NOT NULL,
    unit_id            VARCHAR,
    trace_id           VARCHAR,
    span_id            VARCHAR,
    name               VARCHAR NOT NULL,
    score              DOUBLE NOT NULL,
    label              VARCHAR,
    evaluator          VARCHAR NOT NULL,
    evaluator_version  VARCHAR,
    flag_key           VARCHAR,
    variation          VARCHAR,
    comment            VARCHAR
);

CREATE TABLE spans (
    trace_id             VARCHAR NOT NULL,
    span_id              VARCHAR NOT NULL,
    parent_span_id       VARCHAR,
    name                 VARCHAR NOT NULL,
    kind                 VARCHAR,
    start_ts             TIMESTAMPTZ NOT NULL,
    end_ts               TIMESTAMPTZ NOT NULL,
    duration_ms          DOUBLE NOT NULL,
    status               VARCHAR,
    service              VARCHAR,
    environment          VARCHAR NOT NULL,
    unit_id              VARCHAR,
    flag_key             VARCHAR,
    variation            VARCHAR,
    gen_ai_model         VARCHAR,
    input_tokens         BIGINT,
    output_tokens        BIGINT,
    cost_usd             DOUBLE,
    attributes           JSON,
    received_at          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (trace_id, span_id)
);

CREATE TABLE flag_changes (
    change_id    VARCHAR PRIMARY KEY,
    seq          BIGINT NOT NULL UNIQUE,
    ts           TIMESTAMPTZ NOT NULL,
    environment  VARCHAR,
    flag_key     VARCHAR NOT NULL,
    version      INTEGER NOT NULL,
    actor        VARCHAR NOT NULL,
    action       VARCHAR NOT NULL,
    before       JSON,
    after        JSON,
    reason       VARCHAR,
    prev_hash    VARCHAR NOT NULL,
    hash         VARCHAR NOT NULL
);

CREATE TABLE decisions (
    decision_id     VARCHAR PRIMARY KEY,
    ts              TIMESTAMPTZ NOT NULL,
    environment     VARCHAR NOT NULL,
    flag_key        VARCHAR NOT NULL,
    state           VARCHAR NOT NULL CHECK (state IN ('continue', 'expand', 'pause', 'rollback', 'promote', 'cleanup')),
    actor           VARCHAR NOT NULL,
    reason          VARCHAR,
    recommendation  JSON,
    evidence        JSON,
    rollout_before  JSON,
    rollout_after   JSON
);

-- Which log segments of acknowledged ingestion have been loaded (replay skips them).
CREATE TABLE ingest_segments (
    name       VARCHAR PRIMARY KEY,
    inserted   BIGINT NOT NULL,
    loaded_at  TIMESTAMPTZ NOT NULL
);
