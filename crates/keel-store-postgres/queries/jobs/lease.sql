-- Leases up to $3 ready jobs of one queue: highest priority, then oldest run_at,
-- then enqueue order; of an ordering key only the job that holds it
-- (`runnable`, see migration 0007), so the index hands out candidates and
-- nothing is filtered; rows another node is leasing right now are skipped,
-- not waited for.
-- $1 namespace, $2 queue, $3 limit, $4 now, $5 lease_ms override, $6 worker.
WITH picked AS (
    SELECT j.id
    FROM keel_jobs j
    WHERE j.namespace = $1 AND j.queue = $2 AND j.state = 'ready' AND j.runnable
    ORDER BY j.priority DESC, j.run_at, j.seq
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE keel_jobs j
SET state = 'leased', attempt = j.attempt + 1, lease_seq = j.lease_seq + 1,
    lease_expires_at = $4 + coalesce($5, j.lease_ms), worker_id = $6, updated_at = $4
FROM picked
WHERE j.id = picked.id
RETURNING j.id, j.payload, j.attempt, j.max_attempts, j.lease_seq, j.lease_expires_at,
          j.priority, j.tags::text, j.ordering_key, j.created_at, j.run_at, j.seq, j.traceparent
