SELECT
  (
    SELECT
      MIN(ts)
    FROM exposures
    WHERE
      environment = 'production' AND flag_key = 'support_assistant_profile'
  ) AS first_exposure,
  (
    SELECT
      MAX(ts)
    FROM exposures
    WHERE
      environment = 'production' AND flag_key = 'support_assistant_profile'
  ) AS last_exposure,
  (
    SELECT
      MAX(ts)
    FROM events
    WHERE
      environment = 'production' AND assignment_unit = 'conversation'
  ) AS last_event
SETTINGS enable_materialized_cte = 1, join_use_nulls = 1, function_json_value_return_type_allow_nullable = 1;
