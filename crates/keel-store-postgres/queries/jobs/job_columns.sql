seq, id, queue, state, payload, priority, attempt, max_attempts, run_at, created_at, updated_at, lease_expires_at, lease_ms, backoff, idempotency_key, ordering_key, tags::text, result, traceparent
