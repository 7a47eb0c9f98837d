-- The notification holding a dedup key.
SELECT notification FROM keel_notification_dedup
WHERE namespace = $1 AND channel = $2 AND recipient = $3 AND key = $4
