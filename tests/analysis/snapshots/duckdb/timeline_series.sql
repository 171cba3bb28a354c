WITH exposed AS (
  SELECT
    unit_id,
    MIN(ts) AS first_ts,
    MIN(assigned_variation) AS variation,
    COUNT(DISTINCT assigned_variation) AS n_assigned
  FROM exposures
  WHERE
    environment = 'production' AND flag_key = 'support_assistant_profile'
  GROUP BY
    unit_id
)
SELECT
  DATE_TRUNC('HOUR', e.ts) AS hour,
  u.variation AS variation,
  COUNT(*) AS n,
  AVG(e.score) AS mean
FROM evals AS e
JOIN exposed AS u
  ON u.unit_id = e.unit_id
WHERE
  u.n_assigned = 1
  AND e.environment = 'production'
  AND e.name = 'faithfulness'
  AND e.ts >= u.first_ts
GROUP BY
  DATE_TRUNC('HOUR', e.ts),
  u.variation
ORDER BY
  hour,
  variation;
