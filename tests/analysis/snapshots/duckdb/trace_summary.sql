WITH exposed AS MATERIALIZED (
  SELECT
    unit_id,
    ROW_NUMBER() OVER () AS uid,
    MIN(ts) AS first_ts,
    MIN(assigned_variation) = MAX(assigned_variation) AS one_variation,
    MIN(assigned_variation) AS assigned,
    ARG_MIN(served_variation, ts) AS served,
    MAX(CASE WHEN served_variation <> assigned_variation THEN 1 ELSE 0 END) AS fell_back,
    CAST(NULL AS TEXT) AS segment,
    MAX(CASE WHEN evaluation_reason = 'rule' THEN 1 ELSE 0 END) AS rule_assigned,
    COUNT(CASE WHEN ts < CAST('2026-11-01T00:00:00+00:00' AS TIMESTAMPTZ) THEN 1 END) AS early_exposures
  FROM exposures
  WHERE
    environment = 'production' AND flag_key = 'support_assistant_profile'
  GROUP BY
    unit_id
), units AS (
  SELECT
    unit_id,
    uid,
    first_ts,
    assigned AS variation,
    assigned AS assigned_variation,
    fell_back,
    segment,
    0 AS phase
  FROM exposed
  WHERE
    one_variation
    AND rule_assigned = 0
    AND first_ts >= CAST('2026-11-01T00:00:00+00:00' AS TIMESTAMPTZ)
)
SELECT
  variation,
  name,
  root,
  COUNT(*) AS spans,
  COUNT(DISTINCT trace_id) AS traces,
  QUANTILE_CONT(duration_ms, [0.5, 0.95]) AS latency_ms,
  COUNT(CASE WHEN status = 'error' THEN 1 END) AS errors,
  SUM(input_tokens) AS input_tokens_total,
  SUM(output_tokens) AS output_tokens_total,
  SUM(cost_usd) AS cost_usd_total,
  COUNT(
    CASE
      WHEN (
        NOT input_tokens IS NULL OR NOT output_tokens IS NULL
      ) AND cost_usd IS NULL
      THEN 1
    END
  ) AS spans_without_cost
FROM (
  SELECT
    u.variation,
    s.name,
    s.parent_span_id IS NULL AS root,
    s.trace_id,
    s.duration_ms,
    s.status,
    s.input_tokens,
    s.output_tokens,
    s.cost_usd,
    s.gen_ai_model
  FROM units AS u
  JOIN (
    SELECT
      COALESCE(sp.unit_id, rt.trace_unit, xt.trace_unit) AS unit_id,
      sp.end_ts AS ts,
      sp.name,
      sp.status,
      sp.duration_ms,
      sp.input_tokens,
      sp.output_tokens,
      COALESCE(
        CAST(sp.cost_usd AS DOUBLE),
        CASE
          WHEN (
            sp.gen_ai_model = 'gpt-5-mini' OR STARTS_WITH(sp.gen_ai_model, 'gpt-5-mini')
          )
          THEN COALESCE(sp.input_tokens, 0) * CAST(2.5e-07 AS DOUBLE) + COALESCE(sp.output_tokens, 0) * CAST(2e-06 AS DOUBLE)
          WHEN (
            sp.gen_ai_model = 'gpt-5' OR STARTS_WITH(sp.gen_ai_model, 'gpt-5')
          )
          THEN COALESCE(sp.input_tokens, 0) * CAST(1.25e-06 AS DOUBLE) + COALESCE(sp.output_tokens, 0) * CAST(1e-05 AS DOUBLE)
        END
      ) AS cost_usd,
      sp.trace_id AS trace_id,
      sp.parent_span_id AS parent_span_id,
      sp.gen_ai_model AS gen_ai_model
    FROM spans AS sp
    LEFT JOIN (
      SELECT
        trace_id,
        MIN(unit_id) AS trace_unit
      FROM spans
      WHERE
        environment = 'production'
        AND NOT unit_id IS NULL
        AND NOT trace_id IS NULL
        AND parent_span_id IS NULL
      GROUP BY
        trace_id
    ) AS rt
      ON sp.trace_id = rt.trace_id
    LEFT JOIN (
      SELECT
        trace_id,
        MIN(unit_id) AS trace_unit
      FROM exposures
      WHERE
        environment = 'production'
        AND NOT unit_id IS NULL
        AND NOT trace_id IS NULL
        AND flag_key = 'support_assistant_profile'
      GROUP BY
        trace_id
    ) AS xt
      ON sp.trace_id = xt.trace_id
    WHERE
      sp.environment = 'production'
  ) AS s
    ON s.unit_id = u.unit_id
  WHERE
    s.ts >= u.first_ts
) AS r
GROUP BY
  variation,
  name,
  root
ORDER BY
  variation,
  root DESC,
  name;
