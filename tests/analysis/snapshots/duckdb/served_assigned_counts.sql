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
    served AS variation,
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
  u.phase,
  u.assigned_variation AS variation,
  COUNT(*) AS units
FROM units AS u
GROUP BY
  u.phase,
  u.assigned_variation
ORDER BY
  u.phase,
  u.assigned_variation;
