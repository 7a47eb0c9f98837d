-- Compare and set: only the revision the caller read may be replaced.
-- `finished_at` stays NULL while the run runs (a retry makes it run again).
UPDATE keel_runs
SET status = $1, state = $2, updated_at = $3, rev = rev + 1,
    finished_at = CASE WHEN $1::text = 'running' THEN NULL ELSE $3::bigint END
WHERE id = $4 AND namespace = $5 AND rev = $6
RETURNING rev
