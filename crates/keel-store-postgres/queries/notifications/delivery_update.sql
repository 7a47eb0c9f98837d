UPDATE keel_notification_deliveries SET status = $3, attempts = $4, updated_at = $5
WHERE namespace = $1 AND id = $2
