SELECT
  name,
  evaluator,
  COUNT(*) AS scores
FROM evals
WHERE
  environment = 'production' AND NOT score IS NULL
GROUP BY
  name,
  evaluator
ORDER BY
  scores DESC,
  name,
  evaluator
LIMIT 12;
