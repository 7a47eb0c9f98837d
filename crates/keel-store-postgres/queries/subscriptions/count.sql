-- A namespace's subscriptions, counted against its max_subscriptions.
SELECT count(*) FROM keel_subscriptions WHERE namespace = $1
