-- Sets a queue's policy and gives its unfinished jobs their flow keys under
-- it (keel_flow_key), in one statement.
WITH queue AS (
    INSERT INTO keel_queues (namespace, queue, policy, paused, updated_at)
    VALUES ($1, $2, $3::text::jsonb, false, $4)
    ON CONFLICT (namespace, queue) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at
)
UPDATE keel_jobs j SET flow_key = keel_flow_key($3::text::jsonb, j.tags, j.ordering_key)
WHERE j.namespace = $1 AND j.queue = $2 AND j.finished_at IS NULL
  AND j.flow_key IS DISTINCT FROM keel_flow_key($3::text::jsonb, j.tags, j.ordering_key)
