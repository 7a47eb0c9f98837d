-- Takes a dedup key for a delivery unless an unexpired holder has it;
-- answers a row when taken. A concurrent claim waits on the row's lock.
INSERT INTO keel_notification_dedup (namespace, channel, recipient, key, notification, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (namespace, channel, recipient, key) DO UPDATE
SET notification = EXCLUDED.notification, expires_at = EXCLUDED.expires_at
WHERE keel_notification_dedup.expires_at <= $7
RETURNING notification
