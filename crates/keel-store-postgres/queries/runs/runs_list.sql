-- Newest first, cursor-paged; the filters are optional.
SELECT seq, id, namespace, workflow, version, input, state, created_at, updated_at, rev
FROM keel_runs
WHERE namespace = $1
  AND ($2::text IS NULL OR workflow = $2)
  AND ($3::text IS NULL OR status = $3)
  AND ($4::bigint IS NULL OR seq < $4)
  AND ($6::bigint IS NULL OR created_at >= $6)
  AND ($7::bigint IS NULL OR created_at < $7)
ORDER BY seq DESC
LIMIT $5
