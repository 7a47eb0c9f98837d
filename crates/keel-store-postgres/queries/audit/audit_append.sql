INSERT INTO keel_audit (at, token_id, actor_name, role, namespace, action, target, request_id, summary)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
RETURNING id
