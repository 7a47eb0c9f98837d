INSERT INTO keel_queues (namespace, queue, policy, paused, updated_at)
VALUES ($1, $2, $3::text::jsonb, false, $4)
ON CONFLICT (namespace, queue) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at
