-- A new run; with an idempotency key already taken, nothing (the caller looks it up).
INSERT INTO keel_runs (id, namespace, workflow, version, status, input, state, idempotency_key, created_at, updated_at, rev)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, 1)
ON CONFLICT (namespace, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING seq
