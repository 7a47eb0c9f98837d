-- Queues whose policy carries objectives.
SELECT namespace, queue, policy::text FROM keel_queues
WHERE policy ? 'slo' ORDER BY namespace, queue
