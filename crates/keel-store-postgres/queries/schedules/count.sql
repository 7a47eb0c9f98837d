-- A namespace's schedules, counted against its max_schedules.
SELECT count(*) FROM keel_schedules WHERE namespace = $1
