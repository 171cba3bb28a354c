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
  DATE_TRUNC('HOUR', first_ts) AS hour,
  variation,
  COUNT(*) AS units
FROM exposed
WHERE
  n_assigned = 1
GROUP BY
  DATE_TRUNC('HOUR', first_ts),
  variation
ORDER BY
  hour,
  variation;
