UPDATE keel_subscriptions SET paused = $3 WHERE namespace = $1 AND name = $2
