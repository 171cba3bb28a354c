SELECT
  span_id
FROM spans
WHERE
  environment = 'production'
LIMIT 1
SETTINGS enable_materialized_cte = 1, join_use_nulls = 1, function_json_value_return_type_allow_nullable = 1;
