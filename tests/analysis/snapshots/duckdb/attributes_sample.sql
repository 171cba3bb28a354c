SELECT
  attributes
FROM exposures
WHERE
  environment = 'production'
  AND flag_key = 'support_assistant_profile'
  AND NOT attributes IS NULL
ORDER BY
  ts DESC
LIMIT 2000;
