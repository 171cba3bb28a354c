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
    served AS variation,
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
  u.phase,
  u.assigned_variation AS variation,
  COUNT(*) AS units
FROM units AS u
GROUP BY
  u.phase,
  u.assigned_variation
ORDER BY
  u.phase,
  u.assigned_variation
SETTINGS enable_materialized_cte = 1, join_use_nulls = 1, function_json_value_return_type_allow_nullable = 1;
