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
  ) AS last_event;
