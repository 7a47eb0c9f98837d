-- Running runs of every namespace, oldest first: what a driver resumes.
SELECT seq, id, namespace, workflow, version, input, state, created_at, updated_at, rev
FROM keel_runs
WHERE status = 'running' AND ($1::bigint IS NULL OR seq > $1)
ORDER BY seq
LIMIT $2
