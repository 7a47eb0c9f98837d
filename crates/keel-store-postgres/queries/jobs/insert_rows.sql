-- The one INSERT of new jobs from arrays ($1–$12, $14–$16; $13 is now), in
-- the arrays' order, which `seq` (the enqueue order) follows. Not a whole
-- statement: insert_jobs.sql, run_insert_with_jobs.sql and
-- run_update_with_jobs.sql end it (src/jobs/rows.rs puts them together).
-- The callers have settled idempotency keys and hold the advisory locks of
-- the batch's ordering keys (lock_keys.sql). A keyed job is runnable when it
-- is its key's first in the batch and the key has no unfinished job. The
-- flow key comes from the queue's policy.
INSERT INTO keel_jobs (id, namespace, queue, state, payload, priority, attempt, max_attempts,
                       run_at, created_at, updated_at, lease_seq, lease_ms, backoff,
                       idempotency_key, ordering_key, tags, owner, runnable, flow_key, traceparent)
SELECT u.id, u.namespace, u.queue, u.state, u.payload, u.priority, 0, u.max_attempts,
       u.run_at, $13, $13, 0, u.lease_ms, u.backoff, u.idempotency_key, u.ordering_key, u.tags::jsonb, u.owner,
       u.ordering_key IS NULL OR (
           row_number() OVER (PARTITION BY u.namespace, u.queue, u.ordering_key ORDER BY u.n) = 1
           AND NOT EXISTS (SELECT 1 FROM keel_jobs o
                           WHERE o.namespace = u.namespace AND o.queue = u.queue
                             AND o.ordering_key = u.ordering_key AND o.finished_at IS NULL)),
       keel_flow_key(q.policy, u.tags::jsonb, u.ordering_key), u.traceparent
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::smallint[], $7::int[],
            $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::text[], $14::text[], $15::text[],
            $16::text[])
     WITH ORDINALITY AS u(id, namespace, queue, state, payload, priority, max_attempts,
                          run_at, lease_ms, backoff, idempotency_key, ordering_key, tags, owner, traceparent, n)
LEFT JOIN keel_queues q ON q.namespace = u.namespace AND q.queue = u.queue
