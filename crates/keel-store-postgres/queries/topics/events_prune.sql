-- Removes up to $2 events past their topic's retention and takes them off
-- the topics' counts; $1 is now. Publish times grow with seq, so the expired
-- events are a prefix: only each topic's first $2 events are looked at (a
-- filter on published_at alone would walk a whole topic when none expired).
WITH doomed AS (
    SELECT e.namespace, e.topic, e.seq
    FROM keel_topics t
    JOIN LATERAL (SELECT namespace, topic, seq, published_at FROM keel_events
                  WHERE namespace = t.namespace AND topic = t.name
                  ORDER BY seq LIMIT $2) e ON e.published_at < $1 - t.retention_ms
    LIMIT $2
), gone AS (
    DELETE FROM keel_events e USING doomed d
    WHERE e.namespace = d.namespace AND e.topic = d.topic AND e.seq = d.seq
    RETURNING e.namespace, e.topic
), counted AS (
    UPDATE keel_topics t SET events = t.events - c.n
    FROM (SELECT namespace, topic, count(*) AS n FROM gone GROUP BY namespace, topic) c
    WHERE t.namespace = c.namespace AND t.name = c.topic
    RETURNING c.n
)
SELECT coalesce(sum(n), 0)::bigint FROM counted
