SELECT id, created_at FROM keel_runs WHERE namespace = $1 AND idempotency_key = $2
