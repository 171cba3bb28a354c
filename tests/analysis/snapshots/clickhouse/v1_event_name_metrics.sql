WITH per_unit AS (
  SELECT
    unit_id,
    MIN(ts) AS first_ts,
    COUNT(DISTINCT assigned_variation) AS n_assigned,
    argMin(assigned_variation, ts) AS variation
  FROM exposures
  WHERE
    environment = 'production' AND flag_key = 'support_assistant_profile'
  GROUP BY
    unit_id
), unit_metric AS (
  SELECT
    u.variation,
    e.name,
    e.unit_id,
    AVG(COALESCE(e.value, CAST(1 AS Nullable(Float64)))) AS x
  FROM per_unit AS u
  JOIN events AS e
    ON e.unit_id = u.unit_id
  WHERE
    e.ts >= u.first_ts
    AND u.n_assigned = 1
    AND e.environment = 'production'
    AND e.assignment_unit = 'conversation'
    AND (
      e.flag_key IS NULL OR e.flag_key = 'support_assistant_profile'
    )
  GROUP BY
    u.variation,
    e.name,
    e.unit_id
)
SELECT
  name,
  variation,
  COUNT(*) AS n,
  SUM(x) AS sum_x,
  SUM(x * x) AS sum_x2
FROM unit_metric
GROUP BY
  name,
  variation
ORDER BY
  name,
  variation
SETTINGS enable_materialized_cte = 1, join_use_nulls = 1, function_json_value_return_type_allow_nullable = 1;
