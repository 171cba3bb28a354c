WITH exposed AS MATERIALIZED (
  SELECT
    unit_id,
    ROW_NUMBER() OVER () AS uid,
    MIN(ts) AS first_ts,
    MIN(assigned_variation) = MAX(assigned_variation) AS one_variation,
    MIN(assigned_variation) AS assigned,
    (
      ARRAY_AGG(served_variation ORDER BY ts) FILTER(WHERE
        NOT served_variation IS NULL)
    )[1] AS served,
    MAX(CASE WHEN served_variation <> assigned_variation THEN 1 ELSE 0 END) AS fell_back,
    CAST(NULL AS VARCHAR) AS segment,
    MAX(CASE WHEN evaluation_reason = 'rule' THEN 1 ELSE 0 END) AS rule_assigned,
    COUNT(CASE WHEN ts < CAST('2026-11-01T00:00:00+00:00' AS TIMESTAMPTZ) THEN 1 END) AS early_exposures
  FROM exposures
  WHERE
    environment = 'production'
    AND flag_key = 'support_assistant_profile'
    AND ts < CAST('2026-11-04T00:00:00+00:00' AS TIMESTAMPTZ)
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
      AND ts < CAST('2026-11-04T00:00:00+00:00' AS TIMESTAMPTZ)
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
), g1 AS (
  SELECT
    u.uid,
    AVG(
      CASE
        WHEN s.name = 'faithfulness' AND s.evaluator = 'llm_judge' AND s.ts >= u.first_ts
        THEN s.score
      END
    ) AS p1
  FROM units AS u
  JOIN (
    SELECT
      COALESCE(e.unit_id, b.span_unit, r.response_unit, rt.trace_unit, xt.trace_unit) AS unit_id,
      e.ts AS ts,
      e.name AS name,
      e.evaluator AS evaluator,
      e.score AS score
    FROM evals AS e
    LEFT JOIN (
      SELECT
        trace_id,
        span_id,
        response_id,
        unit_id AS span_unit
      FROM spans
      WHERE
        environment = 'production'
    ) AS b
      ON b.trace_id = e.trace_id AND b.span_id = e.span_id
    LEFT JOIN (
      SELECT
        response_id,
        MIN(trace_id) AS response_trace,
        MIN(unit_id) AS response_unit
      FROM spans
      WHERE
        environment = 'production' AND NOT response_id IS NULL
      GROUP BY
        response_id
    ) AS r
      ON r.response_id = e.response_id
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
      ON rt.trace_id = COALESCE(e.trace_id, r.response_trace)
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
      ON xt.trace_id = COALESCE(e.trace_id, r.response_trace)
    WHERE
      e.environment = 'production'
      AND e.name IN ('faithfulness')
      AND e.ts < CAST('2026-11-04T00:00:00+00:00' AS TIMESTAMPTZ)
  ) AS s
    ON s.unit_id = u.unit_id
  WHERE
    s.ts >= u.first_ts
  GROUP BY
    u.uid
), g2 AS (
  SELECT
    u.uid,
    SUM(
      CASE
        WHEN s.name = 'llm.call' AND s.ts >= u.first_ts
        THEN CASE
          WHEN s.status = 'error'
          THEN CAST(1 AS DOUBLE PRECISION)
          ELSE CAST(0 AS DOUBLE PRECISION)
        END
      END
    ) AS p2
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
      CAST(sp.cost_usd AS DOUBLE PRECISION) AS cost_usd
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
      AND sp.end_ts < CAST('2026-11-04T00:00:00+00:00' AS TIMESTAMPTZ)
  ) AS s
    ON s.unit_id = u.unit_id
  WHERE
    s.ts >= u.first_ts
  GROUP BY
    u.uid
), g3 AS (
  SELECT
    u.uid,
    SUM(CASE WHEN s.ts >= u.first_ts THEN s.value END) AS p3
  FROM units AS u
  JOIN (
    SELECT
      CAST(unit_id AS VARCHAR) AS unit_id,
      ts,
      CAST(value AS DOUBLE PRECISION) AS value
    FROM (
      SELECT
        unit_id,
        ts,
        value
      FROM tickets
      WHERE
        kind = 'refund'
    ) AS user_metric
    WHERE
      ts < CAST('2026-11-04T00:00:00+00:00' AS TIMESTAMPTZ)
  ) AS s
    ON s.unit_id = u.unit_id
  WHERE
    s.ts >= u.first_ts
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
      COALESCE(SUM(early_exposures), 0) AS dq_exposures_before_flag,
      COUNT(CASE WHEN early_exposures > 0 THEN 1 END) AS dq_units_before_flag
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
    SUM(g0.p0 * g0.p0) AS m0_sum_sq,
    COUNT(g1.p1) AS m1_n,
    SUM(g1.p1) AS m1_sum,
    SUM(g1.p1 * g1.p1) AS m1_sum_sq,
    COUNT(*) AS m2_n,
    SUM(COALESCE(g2.p2, 0)) AS m2_sum,
    SUM(COALESCE(g2.p2, 0) * COALESCE(g2.p2, 0)) AS m2_sum_sq,
    COUNT(*) AS m3_n,
    SUM(COALESCE(g3.p3, 0)) AS m3_sum,
    SUM(COALESCE(g3.p3, 0) * COALESCE(g3.p3, 0)) AS m3_sum_sq
  FROM units AS u
  LEFT JOIN g0
    ON g0.uid = u.uid
  LEFT JOIN g1
    ON g1.uid = u.uid
  LEFT JOIN g2
    ON g2.uid = u.uid
  LEFT JOIN g3
    ON g3.uid = u.uid
  GROUP BY
    u.phase,
    u.variation,
    u.segment
) AS r
  ON TRUE
ORDER BY
  r.phase,
  r.variation,
  r.segment;
