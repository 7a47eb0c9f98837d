SELECT namespace, name, spec, state, due_at, rev, created_at, updated_at
FROM keel_schedules WHERE due_at IS NOT NULL AND due_at <= $1
ORDER BY due_at
LIMIT $2
