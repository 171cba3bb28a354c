SELECT
  assigned_variation,
  fallback_reason,
  COUNT(DISTINCT unit_id) AS units
FROM exposures
WHERE
  environment = 'production'
  AND flag_key = 'support_assistant_profile'
  AND served_variation <> assigned_variation
GROUP BY
  assigned_variation,
  fallback_reason
ORDER BY
  assigned_variation,
  fallback_reason;
