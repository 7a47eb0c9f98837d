-- Sets a queue's policy and, when its `key` setting changed, gives its
-- unfinished jobs their flow keys under it (keel_flow_key), in one
-- statement. An unchanged `key` is a one-time filter: the jobs are not
-- scanned at all (a scan that, with statistics stale after a bulk load,
-- went through every unfinished job of the namespace).
WITH old AS (
    SELECT policy -> 'key' AS key FROM keel_queues WHERE namespace = $1 AND queue = $2
), queue AS (
    INSERT INTO keel_queues (namespace, queue, policy, paused, updated_at)
    VALUES ($1, $2, $3::text::jsonb, false, $4)
    ON CONFLICT (namespace, queue) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at
)
UPDATE keel_jobs j SET flow_key = keel_flow_key($3::text::jsonb, j.tags, j.ordering_key)
WHERE ($3::text::jsonb -> 'key') IS DISTINCT FROM (SELECT key FROM old)
  AND j.namespace = $1 AND j.queue = $2 AND j.finished_at IS NULL
  AND j.flow_key IS DISTINCT FROM keel_flow_key($3::text::jsonb, j.tags, j.ordering_key)
