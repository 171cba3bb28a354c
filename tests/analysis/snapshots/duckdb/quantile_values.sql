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
), s AS MATERIALIZED (
  SELECT
    u.variation,
    u.uid,
    src.x
  FROM units AS u
  JOIN (
    SELECT
      unit_id,
      ts,
      value AS x
    FROM events
    WHERE
      environment = 'production'
      AND name = 'latency_ms'
      AND assignment_unit = 'conversation'
  ) AS src
    ON src.unit_id = u.unit_id
  WHERE
    src.ts >= u.first_ts
    AND src.ts < u.first_ts + INTERVAL 24 HOUR
    AND NOT src.x IS NULL
), qs AS (
  SELECT
    variation,
    COUNT(*) AS n,
    QUANTILE_CONT(x, [0.9, 0.95, 0.99]) AS q
  FROM s
  GROUP BY
    variation
), per_unit AS (
  SELECT
    s.variation,
    SUM(CASE WHEN s.x <= qs.q[2] THEN CAST(1 AS DOUBLE) ELSE CAST(0 AS DOUBLE) END) AS below,
    COUNT(*) * CAST(1 AS DOUBLE) AS total
  FROM s
  JOIN qs
    ON qs.variation = s.variation
  GROUP BY
    s.variation,
    s.uid
)
SELECT
  qs.variation,
  qs.n,
  qs.q,
  c.cluster_n,
  c.below_sum,
  c.below_sum_sq,
  c.total_sum,
  c.total_sum_sq,
  c.below_total
FROM qs
JOIN (
  SELECT
    variation,
    COUNT(*) AS cluster_n,
    SUM(below) AS below_sum,
    SUM(below * below) AS below_sum_sq,
    SUM(total) AS total_sum,
    SUM(total * total) AS total_sum_sq,
    SUM(below * total) AS below_total
  FROM per_unit
  GROUP BY
    variation
) AS c
  ON c.variation = qs.variation
ORDER BY
  qs.variation;
