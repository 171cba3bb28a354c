WITH per_unit AS (
  SELECT
    unit_id,
    MIN(ts) AS first_ts,
    COUNT(DISTINCT assigned_variation) AS n_assigned,
    ARG_MIN(assigned_variation, ts) AS variation
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
    AVG(COALESCE(e.value, CAST(1 AS DOUBLE))) AS x
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
  variation;
