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
    MAX(CASE WHEN evaluation_reason = 'rule' THEN 1 ELSE 0 END) AS rule_assigned
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
    one_variation AND rule_assigned = 0
), g0 AS MATERIALIZED (
  SELECT
    u.uid,
    AVG(
      CASE
        WHEN s.metric_row AND s.name = 'latency_ms' AND s.ts >= u.first_ts
        THEN s.value
      END
    ) AS p0,
    COUNT(
      CASE
        WHEN s.flag_row
        AND (
          s.own_row OR s.ts >= (
            SELECT
              MIN(first_ts)
            FROM exposed
          )
        )
        THEN 1
      END
    ) AS flag_events,
    COUNT(CASE WHEN s.flag_row AND s.ts >= u.first_ts THEN 1 END) AS joinable_events,
    COUNT(CASE WHEN s.flag_row AND s.ts < u.first_ts THEN 1 END) AS events_before_exposure
  FROM (
    SELECT
      unit_id,
      ts,
      name,
      value,
      properties,
      assignment_unit = 'conversation' AS metric_row,
      COALESCE(flag_key = 'support_assistant_profile', assignment_unit = 'conversation') AS flag_row,
      COALESCE(flag_key = 'support_assistant_profile', FALSE) AS own_row
    FROM events
    WHERE
      environment = 'production'
      AND (
        (
          assignment_unit = 'conversation' AND name IN ('latency_ms')
        )
        OR COALESCE(flag_key = 'support_assistant_profile', assignment_unit = 'conversation')
      )
  ) AS s
  LEFT JOIN exposed AS u
    ON s.unit_id = u.unit_id
  WHERE
    s.flag_row OR s.ts >= u.first_ts
  GROUP BY
    u.uid
), quality AS (
  SELECT
    e.*,
    j.*
  FROM (
    SELECT
      COUNT(
        CASE WHEN one_variation AND rule_assigned = 0 AND assigned = 'control' THEN 1 END
      ) AS dq_units_0,
      COUNT(
        CASE
          WHEN one_variation AND rule_assigned = 0 AND assigned = 'control' AND fell_back = 1
          THEN 1
        END
      ) AS dq_fallback_units_0,
      COUNT(
        CASE WHEN one_variation AND rule_assigned = 0 AND assigned = 'candidate' THEN 1 END
      ) AS dq_units_1,
      COUNT(
        CASE
          WHEN one_variation AND rule_assigned = 0 AND assigned = 'candidate' AND fell_back = 1
          THEN 1
        END
      ) AS dq_fallback_units_1,
      COUNT(CASE WHEN NOT one_variation THEN 1 END) AS dq_multiple_variation_units,
      COUNT(CASE WHEN one_variation AND NOT rule_assigned = 0 THEN 1 END) AS dq_rule_assigned_units,
      0 AS dq_exposures_before_flag,
      0 AS dq_units_before_flag
    FROM exposed
  ) AS e
  CROSS JOIN (
    SELECT
      COALESCE(SUM(g0.flag_events), 0) AS dq_events,
      COALESCE(SUM(g0.joinable_events), 0) AS dq_joinable_events,
      COALESCE(SUM(g0.events_before_exposure), 0) AS dq_events_before_exposure
    FROM g0
  ) AS j
)
SELECT
  r.*,
  q.*
FROM quality AS q
LEFT JOIN (
  SELECT
    u.phase,
    u.variation,
    u.segment,
    COUNT(*) AS units,
    SUM(u.fell_back) AS fallback_units,
    COUNT(g0.p0) AS m0_n,
    SUM(g0.p0) AS m0_sum,
    SUM(g0.p0 * g0.p0) AS m0_sum_sq
  FROM units AS u
  LEFT JOIN g0
    ON g0.uid = u.uid
  GROUP BY
    u.phase,
    u.variation,
    u.segment
) AS r
  ON TRUE
ORDER BY
  r.phase,
  r.variation,
  r.segment
SETTINGS enable_materialized_cte = 1, join_use_nulls = 1, function_json_value_return_type_allow_nullable = 1;
