-- What the trace analysis joins on beyond ids: a span the caller cancelled (`error.type` naming a
-- cancellation, docs/traces.md), the provider's response id of a generation span and of the eval
-- that judged it (`gen_ai.response.id`), and the offline eval run an eval score belongs to.
ALTER TABLE spans ADD COLUMN cancelled BOOLEAN;
ALTER TABLE spans ADD COLUMN response_id VARCHAR;
ALTER TABLE evals ADD COLUMN response_id VARCHAR;
ALTER TABLE evals ADD COLUMN run_id VARCHAR;
