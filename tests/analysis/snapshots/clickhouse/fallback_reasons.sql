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
  fallback_reason
SETTINGS enable_materialized_cte = 1, join_use_nulls = 1, function_json_value_return_type_allow_nullable = 1;
