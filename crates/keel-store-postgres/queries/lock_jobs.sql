-- Locks a batch of jobs for their transitions, in id order so that two
-- batches never wait on each other in a cycle.
SELECT id, state, attempt, max_attempts, run_at, lease_seq, lease_expires_at, lease_ms, backoff, queue,
       tags ->> 'keel.run' AS run
FROM keel_jobs
WHERE id = ANY($1) AND namespace = $2
ORDER BY id
FOR UPDATE
