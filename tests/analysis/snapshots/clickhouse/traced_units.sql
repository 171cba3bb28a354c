WITH exposed AS MATERIALIZED (
  SELECT
    unit_id,
    unit_id AS uid,
    MIN(ts) AS first_ts,
    MIN(assigned_variation) = MAX(assigned_variation) AS one_variation,
    MIN(assigned_variation) AS assigned,
    argMin(served_variation, ts) AS served,
    MAX(CASE WHEN served_variation <> assigned_variation THEN 1 ELSE 0 END) AS fell_back,
    CAST(NULL AS Nullable(String)) AS segment,
    MAX(CASE WHEN evaluation_reason = 'rule' THEN 1 ELSE 0 END) AS rule_assigned,
    COUNT(CASE WHEN ts < toDateTime64('2026-11-01 00:00:00.000000', 6, 'UTC') THEN 1 END) AS early_exposures
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
    AND first_ts >= toDateTime64('2026-11-01 00:00:00.000000', 6, 'UTC')
)
SELECT
  u.variation,
  COUNT(DISTINCT u.unit_id) AS traced_units
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
    CAST(sp.cost_usd AS Nullable(Float64)) AS cost_usd,
    sp.parent_span_id AS parent_span_id
  FROM spans AS sp
  LEFT JOIN (
    SELECT
      trace_id,
      MIN(unit_id) AS trace_unit
    FROM spans
    WHERE
      environment = 'production'
      AND NOT (
        unit_id IS NULL
      )
      AND NOT (
        trace_id IS NULL
      )
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
      AND NOT (
        unit_id IS NULL
      )
      AND NOT (
        trace_id IS NULL
      )
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
  s.ts >= u.first_ts AND s.parent_span_id IS NULL
GROUP BY
  u.variation
ORDER BY
  u.variation
SETTINGS enable_materialized_cte = 1, join_use_nulls = 1, function_json_value_return_type_allow_nullable = 1;
