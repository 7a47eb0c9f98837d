-- Who holds an Idempotency-Key (after a claim that did not take it).
SELECT digest, notification FROM keel_notification_requests WHERE namespace = $1 AND key = $2
