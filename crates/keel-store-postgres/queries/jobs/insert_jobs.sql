-- Writes a batch of new jobs in one statement, in the batch's order (which
-- `seq`, the enqueue order, follows). $13 is now; the callers have settled
-- idempotency keys.
INSERT INTO keel_jobs (id, namespace, queue, state, payload, priority, attempt, max_attempts,
                       run_at, created_at, updated_at, lease_seq, lease_ms, backoff,
                       idempotency_key, ordering_key, tags, owner)
SELECT u.id, u.namespace, u.queue, u.state, u.payload, u.priority, 0, u.max_attempts,
       u.run_at, $13, $13, 0, u.lease_ms, u.backoff, u.idempotency_key, u.ordering_key, u.tags::jsonb, u.owner
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::smallint[], $7::int[],
            $8::bigint[], $9::bigint[], $10::text[], $11::text[], $12::text[], $14::text[], $15::text[])
     WITH ORDINALITY AS u(id, namespace, queue, state, payload, priority, max_attempts,
                          run_at, lease_ms, backoff, idempotency_key, ordering_key, tags, owner, n)
ORDER BY u.n
