INSERT INTO keel_notification_deliveries (namespace, id, notification, channel, recipient,
    status, duplicate_of, fallback_of, attempts, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, '[]', $9, $9)
