UPDATE keel_subscriptions SET filter = $3, target = $4, consumer_timeout_ms = $5
WHERE namespace = $1 AND name = $2
