-- Takes an Idempotency-Key for a notification, or finds who holds it
-- unexpired: the row answered is this call's when its notification is $4.
-- An expired holder is replaced. Concurrent claims of one key wait on the
-- row's lock, so only one notification wins it.
INSERT INTO keel_notification_requests (namespace, key, digest, notification, expires_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (namespace, key) DO UPDATE
SET digest = EXCLUDED.digest, notification = EXCLUDED.notification, expires_at = EXCLUDED.expires_at
WHERE keel_notification_requests.expires_at <= $6
RETURNING digest, notification
