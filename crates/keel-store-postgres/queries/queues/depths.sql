SELECT namespace, queue, state, count(*) FROM keel_jobs
WHERE finished_at IS NULL GROUP BY namespace, queue, state
