-- Spans arrive through OTLP by the log-then-load path: each carries its identity like the other
-- evidence (event_id = trace id + span id, and the 64-bit identity and payload hashes).
ALTER TABLE spans ADD COLUMN IF NOT EXISTS event_id String DEFAULT concat(trace_id, span_id);
ALTER TABLE spans ADD COLUMN IF NOT EXISTS identity UInt64 DEFAULT 0;
ALTER TABLE spans ADD COLUMN IF NOT EXISTS payload_hash UInt64 DEFAULT 0;
