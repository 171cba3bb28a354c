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
    CASE
      WHEN first_ts < CAST('2026-11-03T00:00:00+00:00' AS TIMESTAMPTZ)
      THEN 0
      WHEN first_ts < CAST('2026-11-05T06:00:00+00:00' AS TIMESTAMPTZ)
      THEN 1
      ELSE 2
    END AS phase
  FROM exposed
  WHERE
    one_variation
    AND rule_assigned = 0
    AND first_ts >= CAST('2026-11-01T00:00:00+00:00' AS TIMESTAMPTZ)
), dx AS (
  SELECT
    u.variation AS variation,
    DATE_TRUNC('DAY', s.ts) AS period,
    u.phase AS stratum,
    CAST(s.attributes #>> '{input_chars}' AS DOUBLE PRECISION) AS x
  FROM units AS u
  JOIN (
    SELECT
      unit_id,
      ts,
      attributes
    FROM exposures
    WHERE
      environment = 'production' AND flag_key = 'support_assistant_profile'
  ) AS s
    ON s.unit_id = u.unit_id
  WHERE
    s.ts >= u.first_ts
    AND NOT CAST(s.attributes #>> '{input_chars}' AS DOUBLE PRECISION) IS NULL
), cells AS (
  SELECT
    variation,
    period,
    stratum,
    x AS val,
    COUNT(*) AS rows_n
  FROM dx
  GROUP BY
    variation,
    period,
    stratum,
    x
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
), ecdf AS (
  SELECT
    variation,
    period,
    ref_period,
    phase,
    val,
    na,
    nb,
    SUM(na) OVER (
      PARTITION BY variation, period, phase
      ORDER BY val
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS cum_a,
    SUM(nb) OVER (
      PARTITION BY variation, period, phase
      ORDER BY val
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
    ) AS cum_b,
    SUM(na) OVER (PARTITION BY variation, period, phase) AS n_a,
    SUM(nb) OVER (PARTITION BY variation, period, phase) AS n_b
  FROM pairs
), binned AS (
  SELECT
    variation,
    period,
    ref_period,
    phase,
    na,
    nb,
    n_a,
    n_b,
    CASE
      WHEN (
        cum_a - na
      ) * 10 >= 9 * n_a
      THEN 9
      ELSE CAST(FLOOR(CAST((
        cum_a - na
      ) * 10 AS DOUBLE PRECISION) / CAST(n_a AS DOUBLE PRECISION)) AS BIGINT)
    END AS decile,
    MAX(
      ABS(
        CAST(cum_a AS DOUBLE PRECISION) / CAST(n_a AS DOUBLE PRECISION) - CAST(cum_b AS DOUBLE PRECISION) / CAST(n_b AS DOUBLE PRECISION)
      )
    ) OVER (PARTITION BY variation, period, phase) AS w_ks,
    SUM(val * na) OVER (PARTITION BY variation, period, phase) AS w_ref_sum,
    SUM(val * nb) OVER (PARTITION BY variation, period, phase) AS w_cmp_sum,
    MIN(CASE WHEN 2 * cum_a >= n_a THEN val END) OVER (PARTITION BY variation, period, phase) AS w_ref_median,
    MIN(CASE WHEN 2 * cum_b >= n_b THEN val END) OVER (PARTITION BY variation, period, phase) AS w_cmp_median
  FROM ecdf
  WHERE
    n_a > 0 AND n_b > 0
)
SELECT
  variation,
  period,
  ref_period,
  phase,
  decile,
  SUM(na) AS ref_count,
  SUM(nb) AS cmp_count,
  MAX(n_a) AS ref_n,
  MAX(n_b) AS cmp_n,
  MAX(w_ks) AS ks,
  MAX(w_ref_sum) AS ref_sum,
  MAX(w_cmp_sum) AS cmp_sum,
  MAX(w_ref_median) AS ref_median,
  MAX(w_cmp_median) AS cmp_median
FROM binned
GROUP BY
  variation,
  period,
  ref_period,
  phase,
  decile
ORDER BY
  variation,
  period,
  ref_period,
  phase,
  decile;
