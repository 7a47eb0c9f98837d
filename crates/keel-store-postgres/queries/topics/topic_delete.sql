-- Removes a topic, its events, its subscriptions and their claims in one
-- statement; the number of topics removed.
WITH gone AS (DELETE FROM keel_topics WHERE namespace = $1 AND name = $2 RETURNING name),
     events AS (DELETE FROM keel_events WHERE namespace = $1 AND topic = $2
                AND EXISTS (SELECT 1 FROM gone)),
     subs AS (DELETE FROM keel_subscriptions WHERE namespace = $1 AND topic = $2
              AND EXISTS (SELECT 1 FROM gone) RETURNING name),
     claims AS (DELETE FROM keel_claims WHERE namespace = $1
                AND subscription IN (SELECT name FROM subs))
SELECT count(*) FROM gone
