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
), sx AS (
  SELECT
    COALESCE(sp.unit_id, rt.trace_unit, xt.trace_unit) AS unit_id,
    sp.end_ts AS ts,
    sp.name,
    sp.status,
    sp.duration_ms,
    sp.input_tokens,
    sp.output_tokens,
    COALESCE(
      CAST(sp.cost_usd AS DOUBLE PRECISION),
      CASE
        WHEN (
          sp.gen_ai_model = 'gpt-5' OR STARTS_WITH(sp.gen_ai_model, 'gpt-5')
        )
        THEN COALESCE(sp.input_tokens, 0) * CAST(1.25e-06 AS DOUBLE PRECISION) + COALESCE(sp.output_tokens, 0) * CAST(1e-05 AS DOUBLE PRECISION)
      END
    ) AS cost_usd,
    sp.trace_id AS trace_id,
    sp.start_ts AS start_ts,
    sp.end_ts AS end_ts,
    sp.cancelled AS cancelled
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
), cx AS (
  SELECT
    trace_id,
    MIN(end_ts) AS cancelled_at
  FROM sx
  WHERE
    cancelled = TRUE
  GROUP BY
    trace_id
)
SELECT
  u.variation,
  COUNT(DISTINCT x.trace_id) AS cancelled_traces,
  COUNT(CASE WHEN NOT x.output_tokens IS NULL AND x.end_ts > c.cancelled_at THEN 1 END) AS generations_ran_on,
  SUM(
    CASE
      WHEN NOT x.output_tokens IS NULL AND x.end_ts > c.cancelled_at
      THEN x.input_tokens
    END
  ) AS input_tokens_ran_on,
  SUM(
    CASE
      WHEN NOT x.output_tokens IS NULL AND x.end_ts > c.cancelled_at
      THEN x.output_tokens
    END
  ) AS output_tokens_ran_on,
  SUM(
    CASE
      WHEN NOT x.output_tokens IS NULL AND x.end_ts > c.cancelled_at
      THEN CAST(x.output_tokens AS DOUBLE PRECISION) * LEAST(
        CAST(1 AS DOUBLE PRECISION),
        CAST(EXTRACT(EPOCH FROM (
          x.end_ts - c.cancelled_at
        )) * 1000000 AS DOUBLE PRECISION) / GREATEST(
          CAST(EXTRACT(EPOCH FROM (
            x.end_ts - x.start_ts
          )) * 1000000 AS DOUBLE PRECISION),
          CAST(1 AS DOUBLE PRECISION)
        )
      )
    END
  ) AS output_tokens_after_cancel,
  SUM(
    CASE
      WHEN NOT x.output_tokens IS NULL AND x.end_ts > c.cancelled_at
      THEN x.cost_usd
    END
  ) AS cost_ran_on,
  COUNT(
    CASE
      WHEN NOT x.output_tokens IS NULL AND x.end_ts > c.cancelled_at AND x.cost_usd IS NULL
      THEN 1
    END
  ) AS unpriced_ran_on
FROM sx AS x
JOIN cx AS c
  ON c.trace_id = x.trace_id
JOIN units AS u
  ON u.unit_id = x.unit_id
WHERE
  x.ts >= u.first_ts
GROUP BY
  u.variation
ORDER BY
  u.variation;
