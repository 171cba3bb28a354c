-- Spans arrive through OTLP (/v1/traces) by the same log-then-load path as the other evidence:
-- each row carries its identity (environment, `spans`, trace id + span id) in `event_id`,
-- `identity` and `payload_hash`, and the (trace_id, span_id) key goes — the same ids in two
-- environments are two spans, and a duplicate must never fail a segment's load.
CREATE TABLE spans_next (
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
    event_id             VARCHAR,
    identity             UBIGINT,
    payload_hash         UBIGINT
);
INSERT INTO spans_next BY NAME SELECT * FROM spans;
DROP TABLE spans;
ALTER TABLE spans_next RENAME TO spans;
