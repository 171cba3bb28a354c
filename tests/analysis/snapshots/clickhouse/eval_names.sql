SELECT
  name,
  evaluator,
  COUNT(*) AS scores
FROM evals
WHERE
  environment = 'production' AND NOT (
    score IS NULL
  )
GROUP BY
  name,
  evaluator
ORDER BY
  scores DESC,
  name,
  evaluator
LIMIT 12
SETTINGS enable_materialized_cte = 1, join_use_nulls = 1, function_json_value_return_type_allow_nullable = 1;
