-- Forgets expired keys and up to $3 notifications made before $2, with
-- their deliveries; answers how many notifications went.
WITH dedup AS (DELETE FROM keel_notification_dedup WHERE expires_at <= $1),
requests AS (DELETE FROM keel_notification_requests WHERE expires_at <= $1),
old AS (
    SELECT namespace, id FROM keel_notifications WHERE created_at < $2
    ORDER BY created_at LIMIT $3
),
deliveries AS (
    DELETE FROM keel_notification_deliveries d USING old
    WHERE d.namespace = old.namespace AND d.notification = old.id
)
DELETE FROM keel_notifications n USING old
WHERE n.namespace = old.namespace AND n.id = old.id
