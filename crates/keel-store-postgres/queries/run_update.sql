-- Compare and set: only the revision the caller read may be replaced.
UPDATE keel_runs
SET status = $1, state = $2, updated_at = $3, rev = rev + 1
WHERE id = $4 AND namespace = $5 AND rev = $6
RETURNING rev
