SELECT namespace, name, spec, state, due_at, rev, created_at, updated_at
FROM keel_schedules WHERE namespace = $1 ORDER BY name
