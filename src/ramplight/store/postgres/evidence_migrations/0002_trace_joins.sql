-- Cancelled spans, response ids (spans and the evals that judge them) and eval run ids
-- (the DuckDB store's migration 0011 says why).
ALTER TABLE spans ADD COLUMN cancelled BOOLEAN;
ALTER TABLE spans ADD COLUMN response_id TEXT;
ALTER TABLE evals ADD COLUMN response_id TEXT;
ALTER TABLE evals ADD COLUMN run_id TEXT;
CREATE INDEX spans_response ON spans (environment, response_id) WHERE response_id IS NOT NULL;
