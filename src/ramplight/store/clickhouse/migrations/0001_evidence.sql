-- The evidence on ClickHouse: the contract's columns (as store/duckdb's EVIDENCE_COLUMNS), JSON
-- documents as String, times as DateTime64(6, 'UTC'). Each table is ordered for the readout's
-- access path: one environment's flag exposures by unit, its events by name and unit. A replayed
-- segment insert carries the same deduplication token and is dropped (the window keeps the
-- last 10,000 insert blocks of each table).

CREATE TABLE IF NOT EXISTS exposures (
    event_id            String,
    ts                  DateTime64(6, 'UTC'),
    received_at         DateTime64(6, 'UTC'),
    environment         LowCardinality(String),
    flag_key            LowCardinality(String),
    flag_version        Nullable(Int32),
    assignment_unit     LowCardinality(String),
    unit_id             String,
    assigned_variation  LowCardinality(String),
    served_variation    LowCardinality(String),
    fallback_reason     Nullable(String),
    behavior            Nullable(String),
    ids                 Nullable(String),
    attributes          Nullable(String),
    trace_id            Nullable(String),
    sdk                 Nullable(String),
    identity            UInt64,
    payload_hash        UInt64
) ENGINE = MergeTree ORDER BY (environment, flag_key, unit_id, ts)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS events (
    event_id         String,
    ts               DateTime64(6, 'UTC'),
    received_at      DateTime64(6, 'UTC'),
    environment      LowCardinality(String),
    name             LowCardinality(String),
    unit_id          String,
    assignment_unit  LowCardinality(String),
    ids              Nullable(String),
    value            Nullable(Float64),
    properties       Nullable(String),
    flag_key         Nullable(String),
    variation        Nullable(String),
    trace_id         Nullable(String),
    identity         UInt64,
    payload_hash     UInt64
) ENGINE = MergeTree ORDER BY (environment, name, unit_id, ts)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS evals (
    event_id           String,
    ts                 DateTime64(6, 'UTC'),
    received_at        DateTime64(6, 'UTC'),
    environment        LowCardinality(String),
    unit_id            Nullable(String),
    trace_id           Nullable(String),
    span_id            Nullable(String),
    name               LowCardinality(String),
    score              Float64,
    label              Nullable(String),
    evaluator          String,
    evaluator_version  Nullable(String),
    flag_key           Nullable(String),
    variation          Nullable(String),
    comment            Nullable(String),
    identity           UInt64,
    payload_hash       UInt64
) ENGINE = MergeTree ORDER BY (environment, name, ts)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS spans (
    trace_id        String,
    span_id         String,
    parent_span_id  Nullable(String),
    name            String,
    kind            Nullable(String),
    start_ts        DateTime64(6, 'UTC'),
    end_ts          DateTime64(6, 'UTC'),
    duration_ms     Float64,
    status          Nullable(String),
    service         Nullable(String),
    environment     LowCardinality(String),
    unit_id         Nullable(String),
    flag_key        Nullable(String),
    variation       Nullable(String),
    gen_ai_model    Nullable(String),
    input_tokens    Nullable(Int64),
    output_tokens   Nullable(Int64),
    cost_usd        Nullable(Float64),
    attributes      Nullable(String),
    received_at     DateTime64(6, 'UTC')
) ENGINE = MergeTree ORDER BY (environment, start_ts)
SETTINGS non_replicated_deduplication_window = 10000;

CREATE TABLE IF NOT EXISTS ingest_segments (
    name       String,
    inserted   UInt64,
    loaded_at  DateTime64(6, 'UTC')
) ENGINE = ReplacingMergeTree ORDER BY name;
