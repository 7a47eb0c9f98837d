-- Entries before an id, newest first, by namespace, action and actor (a
-- token id or a name) when given.
SELECT id, at, token_id, actor_name, role, namespace, action, target, request_id, summary, outcome
FROM keel_audit
WHERE id < $1
  AND ($2::text IS NULL OR namespace = $2)
  AND ($3::text IS NULL OR action = $3)
  AND ($4::text IS NULL OR token_id = $4 OR actor_name = $4)
ORDER BY id DESC
LIMIT $5
