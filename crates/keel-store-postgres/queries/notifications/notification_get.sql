SELECT id, recipient, category, body, created_at FROM keel_notifications
WHERE namespace = $1 AND id = $2
