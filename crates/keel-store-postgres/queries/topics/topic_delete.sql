-- Removes a topic and its events in one statement; the number of topics removed.
WITH gone AS (DELETE FROM keel_topics WHERE namespace = $1 AND name = $2 RETURNING name),
     events AS (DELETE FROM keel_events WHERE namespace = $1 AND topic = $2
                AND EXISTS (SELECT 1 FROM gone))
SELECT count(*) FROM gone
