INSERT INTO keel_subscriptions (namespace, name, id, topic, filter, target, consumer_timeout_ms,
                                paused, position, delivered, skipped, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, false, $8, 0, 0, $9)
