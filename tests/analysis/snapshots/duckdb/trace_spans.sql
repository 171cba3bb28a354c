SELECT
  trace_id,
  span_id,
  parent_span_id,
  name,
  start_ts,
  end_ts,
  duration_ms,
  status,
  gen_ai_model,
  input_tokens,
  output_tokens
FROM spans
WHERE
  environment = 'production' AND trace_id IN ('t1', 't2')
ORDER BY
  trace_id,
  start_ts,
  span_id
LIMIT 2000;
