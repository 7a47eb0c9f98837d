INSERT INTO keel_queues (namespace, queue, policy, paused, updated_at)
VALUES ($1, $2, '{}', $3, $4)
ON CONFLICT (namespace, queue) DO UPDATE SET paused = excluded.paused, updated_at = excluded.updated_at
