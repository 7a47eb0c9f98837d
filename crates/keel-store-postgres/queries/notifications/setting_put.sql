-- Creates a setting or replaces its body; updated_at moves only when the
-- body changed. `created` is true for a new row (xmax is 0 on an insert).
INSERT INTO keel_notification_settings (namespace, kind, name, body, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $5)
ON CONFLICT (namespace, kind, name) DO UPDATE
SET body = EXCLUDED.body,
    updated_at = CASE WHEN keel_notification_settings.body = EXCLUDED.body
                      THEN keel_notification_settings.updated_at ELSE EXCLUDED.updated_at END
RETURNING name, body, created_at, updated_at, (xmax = 0) AS created
