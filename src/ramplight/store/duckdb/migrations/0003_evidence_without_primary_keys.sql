-- Evidence tables without a PRIMARY KEY on event_id: the index made every load several times
-- slower. Loads de-duplicate on event_id themselves (store.load_segment).

CREATE TABLE exposures_next (
    event_id            VARCHAR NOT NULL,
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
INSERT INTO exposures_next SELECT * FROM exposures;
DROP TABLE exposures;
ALTER TABLE exposures_next RENAME TO exposures;

CREATE TABLE events_next (
    event_id         VARCHAR NOT NULL,
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
INSERT INTO events_next SELECT * FROM events;
DROP TABLE events;
ALTER TABLE events_next RENAME TO events;

CREATE TABLE evals_next (
    event_id           VARCHAR NOT NULL,
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
INSERT INTO evals_next SELECT * FROM evals;
DROP TABLE evals;
ALTER TABLE evals_next RENAME TO evals;
