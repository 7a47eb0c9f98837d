SELECT name, body, created_at, updated_at
FROM keel_notification_settings WHERE namespace = $1 AND kind = $2 AND name = $3
