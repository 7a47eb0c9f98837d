-- Of one namespace ($1) or all (NULL), of one topic ($2) or all (NULL).
SELECT s.namespace, s.name, s.id, s.topic, s.filter, s.target, s.consumer_timeout_ms, s.paused,
       s.position, s.delivered, s.skipped, s.created_at, coalesce(t.head_seq, 0)
FROM keel_subscriptions s
LEFT JOIN keel_topics t ON t.namespace = s.namespace AND t.name = s.topic
WHERE ($1::text IS NULL OR s.namespace = $1) AND ($2::text IS NULL OR s.topic = $2)
ORDER BY s.namespace, s.name
