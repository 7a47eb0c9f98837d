-- Writes a schedule if its revision is still the one read ($6); no row when
-- it moved.
UPDATE keel_schedules
SET spec = $3, state = $4, due_at = $5, rev = rev + 1, updated_at = $7
WHERE namespace = $1 AND name = $2 AND rev = $6
RETURNING namespace, name, spec, state, due_at, rev, created_at, updated_at
