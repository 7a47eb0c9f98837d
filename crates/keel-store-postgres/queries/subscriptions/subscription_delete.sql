-- Removes a subscription and its claims; the number of subscriptions removed.
WITH gone AS (DELETE FROM keel_subscriptions WHERE namespace = $1 AND name = $2 RETURNING name),
     claims AS (DELETE FROM keel_claims WHERE namespace = $1 AND subscription = $2)
SELECT count(*) FROM gone
