-- An idempotency key past its window is free again.
UPDATE keel_runs SET idempotency_key = NULL WHERE id = $1
