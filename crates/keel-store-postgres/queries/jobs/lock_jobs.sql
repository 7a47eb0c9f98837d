-- Locks a batch of jobs for their transitions, in id order so that two
-- batches never wait on each other in a cycle. By id alone; the caller checks
-- the namespace (a job of another namespace stays locked only until this
-- transaction ends, untouched, and is answered job_not_found). With
-- `namespace = $2` here, PostgreSQL's generic plan (used once the statement
-- has run five times) intersected the primary key with the namespace's whole
-- `keel_jobs_by_queue` range: 5 ms per ack with 75,000 jobs in the table,
-- instead of 0.1 ms.
SELECT id, state, attempt, max_attempts, run_at, lease_seq, lease_expires_at, lease_ms, backoff, queue,
       owner, ordering_key, namespace
FROM keel_jobs
WHERE id = ANY($1)
ORDER BY id
FOR UPDATE
