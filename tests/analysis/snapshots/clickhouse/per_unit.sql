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
), g0 AS (
  SELECT
    u.uid,
    AVG(CASE WHEN s.name = 'latency_ms' AND s.ts >= u.first_ts THEN s.value END) AS p0,
    AVG(
      CASE
        WHEN s.name = 'latency_ms'
        AND s.ts < u.first_ts
        AND s.ts >= u.first_ts - INTERVAL 168 HOUR
        THEN s.value
      END
    ) AS r0,
    SUM(CASE WHEN s.name = 'cost_usd' AND s.ts >= u.first_ts THEN s.value END) AS p1,
    SUM(
      CASE
        WHEN s.name = 'cost_usd'
        AND s.ts < u.first_ts
        AND s.ts >= u.first_ts - INTERVAL 12 HOUR
        THEN s.value
      END
    ) AS r1,
    SUM(
      CASE
        WHEN s.name = 'turn' AND s.ts >= u.first_ts AND s.ts < u.first_ts + INTERVAL 90 MINUTE
        THEN CAST(1 AS Nullable(Float64))
      END
    ) AS p2
  FROM units AS u
  JOIN (
    SELECT
      unit_id,
      ts,
      name,
      value,
      properties
    FROM events
    WHERE
      environment = 'production'
      AND assignment_unit = 'conversation'
      AND name IN ('cost_usd', 'latency_ms', 'turn')
  ) AS s
    ON s.unit_id = u.unit_id
  WHERE
    s.ts >= u.first_ts - INTERVAL 168 HOUR
  GROUP BY
    u.uid
)
SELECT
  u.unit_id,
  u.variation,
  u.phase,
  u.segment,
  u.first_ts,
  u.fell_back,
  g0.p0 AS "latency",
  g0.r0 AS "latency__pre",
  COALESCE(g0.p1, 0) AS "cost",
  g0.r1 AS "cost__pre",
  COALESCE(g0.p2, 0) AS "turns"
FROM units AS u
LEFT JOIN g0
  ON g0.uid = u.uid
ORDER BY
  u.unit_id
SETTINGS enable_materialized_cte = 1, join_use_nulls = 1, function_json_value_return_type_allow_nullable = 1;
