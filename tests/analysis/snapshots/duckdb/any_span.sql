SELECT
  span_id
FROM spans
WHERE
  environment = 'production'
LIMIT 1;
