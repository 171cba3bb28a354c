SELECT
  attributes
FROM exposures
WHERE
  environment = 'production'
  AND flag_key = 'support_assistant_profile'
  AND NOT (
    attributes IS NULL
  )
ORDER BY
  ts DESC
LIMIT 2000
SETTINGS enable_materialized_cte = 1, join_use_nulls = 1, function_json_value_return_type_allow_nullable = 1;
