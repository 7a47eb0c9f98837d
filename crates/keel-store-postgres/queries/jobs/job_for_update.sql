-- The fields a transition needs, with the row locked for it.
SELECT state, attempt, max_attempts, run_at, lease_seq, lease_expires_at, lease_ms, backoff, queue,
       owner, ordering_key
FROM keel_jobs
WHERE id = $1 AND namespace = $2
FOR UPDATE
