INSERT INTO keel_notifications (namespace, id, recipient, category, body, created_at)
VALUES ($1, $2, $3, $4, $5, $6)
