-- Leases the jobs the fair share gave each key of a keyed queue: $3 keys,
-- $4 how many of each, in each key's lease order (lease.sql's, per key), and
-- in the same statement stores the keys' new virtual times ($8) and rate
-- states ($9) and the queue's fair-share clock ($10).
-- $1 namespace, $2 queue, $5 now, $6 lease_ms override, $7 worker.
WITH picked AS (
    SELECT j.id
    FROM unnest($3::text[], $4::bigint[]) AS w(key, n)
    CROSS JOIN LATERAL (
        SELECT k.id FROM keel_jobs k
        WHERE k.namespace = $1 AND k.queue = $2 AND k.state = 'ready' AND k.runnable
          AND k.flow_key = w.key
        ORDER BY k.priority DESC, k.run_at, k.seq
        LIMIT w.n
        FOR UPDATE SKIP LOCKED
    ) j
),
clock AS (
    UPDATE keel_queues SET fair_clock = $10 WHERE namespace = $1 AND queue = $2
),
shares AS (
    INSERT INTO keel_flow_keys (namespace, queue, key, vtime, rate_tat)
    SELECT $1, $2, k, v, t FROM unnest($3::text[], $8::bigint[], $9::bigint[]) AS u(k, v, t)
    ON CONFLICT (namespace, queue, key) DO UPDATE SET vtime = excluded.vtime, rate_tat = excluded.rate_tat
)
UPDATE keel_jobs j
SET state = 'leased', attempt = j.attempt + 1, lease_seq = j.lease_seq + 1,
    lease_expires_at = $5 + coalesce($6, j.lease_ms), worker_id = $7, updated_at = $5
FROM picked
WHERE j.id = picked.id
RETURNING j.id, j.payload, j.attempt, j.max_attempts, j.lease_seq, j.lease_expires_at,
          j.priority, j.tags::text, j.ordering_key, j.created_at, j.run_at, j.seq, j.traceparent
