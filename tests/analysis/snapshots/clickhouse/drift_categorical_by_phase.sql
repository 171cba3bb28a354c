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
    CASE
      WHEN first_ts < toDateTime64('2026-11-03 00:00:00.000000', 6, 'UTC')
      THEN 0
      WHEN first_ts < toDateTime64('2026-11-05 06:00:00.000000', 6, 'UTC')
      THEN 1
      ELSE 2
    END AS phase
  FROM exposed
  WHERE
    one_variation
    AND rule_assigned = 0
    AND first_ts >= toDateTime64('2026-11-01 00:00:00.000000', 6, 'UTC')
), dx AS (
  SELECT
    u.variation AS variation,
    CAST(CASE
      WHEN s.ts < toDateTime64('2026-11-03 00:00:00.000000', 6, 'UTC')
      THEN 0
      WHEN s.ts < toDateTime64('2026-11-05 06:00:00.000000', 6, 'UTC')
      THEN 1
      ELSE 2
    END AS Nullable(Int64)) AS period,
    u.phase AS stratum,
    s.gen_ai_model AS x
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
      sp.gen_ai_model AS gen_ai_model,
      sp.attributes AS attributes
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
    s.ts >= u.first_ts AND NOT (
      s.gen_ai_model IS NULL
    ) AND u.phase = 1
), raw AS (
  SELECT
    variation,
    period,
    stratum,
    x,
    COUNT(*) AS raw_n
  FROM dx
  GROUP BY
    variation,
    period,
    stratum,
    x
), ranked AS (
  SELECT
    x,
    ROW_NUMBER() OVER (ORDER BY SUM(raw_n) DESC, x) AS category_rank
  FROM raw
  GROUP BY
    x
), cells AS (
  SELECT
    d.variation AS variation,
    d.period AS period,
    d.stratum AS stratum,
    CASE WHEN r.category_rank <= 5 THEN d.x END AS val,
    SUM(d.raw_n) AS rows_n
  FROM raw AS d
  JOIN ranked AS r
    ON r.x = d.x
  GROUP BY
    d.variation,
    d.period,
    d.stratum,
    CASE WHEN r.category_rank <= 5 THEN d.x END
), pairs AS (
  SELECT
    a.variation AS variation,
    NULL AS period,
    NULL AS ref_period,
    a.stratum AS phase,
    c.val AS val,
    SUM(CASE WHEN c.variation = 'control' THEN c.rows_n ELSE 0 END) AS na,
    SUM(CASE WHEN c.variation = a.variation THEN c.rows_n ELSE 0 END) AS nb
  FROM (
    SELECT
      variation,
      stratum
    FROM cells
    WHERE
      variation <> 'control'
    GROUP BY
      variation,
      stratum
  ) AS a
  JOIN cells AS c
    ON c.stratum = a.stratum
  WHERE
    (
      c.variation = 'control' OR c.variation = a.variation
    )
  GROUP BY
    a.variation,
    a.stratum,
    c.val
  UNION ALL
  SELECT
    p.variation AS variation,
    p.period AS period,
    p.first_period AS ref_period,
    NULL AS phase,
    c.val AS val,
    SUM(CASE WHEN c.period = p.first_period THEN c.rows_n ELSE 0 END) AS na,
    SUM(CASE WHEN c.period = p.period THEN c.rows_n ELSE 0 END) AS nb
  FROM (
    SELECT
      pc.variation AS variation,
      pc.period AS period,
      f.first_period
    FROM cells AS pc
    JOIN (
      SELECT
        variation,
        MIN(period) AS first_period
      FROM cells
      GROUP BY
        variation
    ) AS f
      ON f.variation = pc.variation
    WHERE
      pc.period > f.first_period
    GROUP BY
      pc.variation,
      pc.period,
      f.first_period
  ) AS p
  JOIN cells AS c
    ON c.variation = p.variation
  WHERE
    (
      c.period = p.first_period OR c.period = p.period
    )
  GROUP BY
    p.variation,
    p.period,
    p.first_period,
    c.val
)
SELECT
  variation,
  period,
  ref_period,
  phase,
  val AS category,
  na AS ref_count,
  nb AS cmp_count
FROM pairs
ORDER BY
  variation,
  period,
  ref_period,
  phase,
  val
SETTINGS enable_materialized_cte = 1, join_use_nulls = 1, function_json_value_return_type_allow_nullable = 1;
