-- Writes a schedule if its revision is still the one read ($6); no row when
-- it moved. updated_at moves only when the spec changed (fires do not).
UPDATE keel_schedules
SET state = $4, due_at = $5, rev = rev + 1,
    updated_at = CASE WHEN spec = $3 THEN updated_at ELSE $7 END,
    spec = $3
WHERE namespace = $1 AND name = $2 AND rev = $6
RETURNING namespace, name, spec, state, due_at, rev, created_at, updated_at
