SELECT id, namespace, state, attempt, max_attempts, run_at, lease_seq, lease_expires_at
FROM keel_jobs
WHERE state = 'leased' AND lease_expires_at <= $1
ORDER BY lease_expires_at
LIMIT $2
FOR UPDATE SKIP LOCKED
