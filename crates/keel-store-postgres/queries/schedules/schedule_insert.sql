-- Creates a schedule at revision 1; no row when the name is taken.
INSERT INTO keel_schedules (namespace, name, spec, state, due_at, rev, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, 1, $6, $6)
ON CONFLICT (namespace, name) DO NOTHING
RETURNING namespace, name, spec, state, due_at, rev, created_at, updated_at
