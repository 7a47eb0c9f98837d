-- Every queue with a policy of its own (push queues are found this way).
SELECT namespace, queue, policy::text
FROM keel_queues
WHERE policy <> '{}'::jsonb
ORDER BY namespace, queue
