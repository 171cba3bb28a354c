-- Cancelled spans, response ids (spans and the evals that judge them) and eval run ids
-- (the DuckDB store's migration 0011 says why).
ALTER TABLE spans ADD COLUMN IF NOT EXISTS cancelled Nullable(Bool);
ALTER TABLE spans ADD COLUMN IF NOT EXISTS response_id Nullable(String);
ALTER TABLE evals ADD COLUMN IF NOT EXISTS response_id Nullable(String);
ALTER TABLE evals ADD COLUMN IF NOT EXISTS run_id Nullable(String);
