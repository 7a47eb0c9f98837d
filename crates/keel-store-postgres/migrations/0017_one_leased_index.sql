-- One index of leased jobs instead of two: every lease writes an entry into
-- each index whose predicate its new row meets, and a second partial index on
-- `state = 'leased'` cost about a sixth more per lease (measured). Ordered by
-- queue and key, it serves the concurrency counts; the expired-lease pass
-- reads all of it (the jobs in flight), which is small next to a lease per job.
DROP INDEX keel_jobs_leased;
DROP INDEX keel_jobs_leased_by_queue;
CREATE INDEX keel_jobs_leased ON keel_jobs (namespace, queue, flow_key, lease_expires_at)
    WHERE state = 'leased';
