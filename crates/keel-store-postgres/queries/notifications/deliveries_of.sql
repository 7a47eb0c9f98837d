-- A page of notifications' deliveries, in the order made.
SELECT id, notification, channel, recipient, status, duplicate_of, fallback_of, attempts,
       created_at, updated_at
FROM keel_notification_deliveries
WHERE namespace = $1 AND notification = ANY($2)
ORDER BY notification, id
