-- Compare and set of a run's journal together with the jobs it starts, as one
-- statement: one round trip that commits on its own, where a transaction
-- took four (BEGIN, UPDATE, INSERT, COMMIT). The jobs are written only if the
-- revision matched. $1–$16 are insert_jobs.sql's; returns the new revision,
-- or no row when the run changed or is gone.
WITH run AS (
    UPDATE keel_runs
    SET status = $17, state = $18, updated_at = $13, rev = rev + 1,
        finished_at = CASE WHEN $17::text = 'running' THEN NULL ELSE $13::bigint END
    WHERE id = $19 AND namespace = $20 AND rev = $21
    RETURNING rev
), jobs AS (
    INSERT INTO keel_jobs (id, namespace, queue, state, payload, priority, attempt, max_attempts,
                           run_at, created_at, updated_at, lease_seq, lease_ms, backoff,
                           idempotency_key, ordering_key, tags, owner, runnable, flow_key, traceparent)
    SELECT u.id, u.namespace, u.queue, u.state, u.payload, u.priority, 0, u.max_attempts,
           u.run_at, $13, $13, 0, u.lease_ms, u.backoff, u.idempotency_key, u.ordering_key, u.tags::jsonb, u.owner,
           -- Jobs with ordering keys take the transaction path (their keys
           -- must be locked), so every job here is runnable.
           true,
           keel_flow_key(q.policy, u.tags::jsonb, u.ordering_key), u.traceparent
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::smallint[], $7::int[],
                $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::text[], $14::text[], $15::text[],
                $16::text[])
         WITH ORDINALITY AS u(id, namespace, queue, state, payload, priority, max_attempts,
                              run_at, lease_ms, backoff, idempotency_key, ordering_key, tags, owner, traceparent, n)
    LEFT JOIN keel_queues q ON q.namespace = u.namespace AND q.queue = u.queue
    WHERE EXISTS (SELECT 1 FROM run)
    ORDER BY u.n
)
SELECT rev FROM run
