-- One delivery, locked for a compare-and-set of its status.
SELECT id, notification, channel, recipient, status, duplicate_of, fallback_of, attempts,
       created_at, updated_at
FROM keel_notification_deliveries WHERE namespace = $1 AND id = $2
FOR UPDATE
