-- A page of a kind's settings by name, after $3 (null: from the first).
SELECT name, body, created_at, updated_at
FROM keel_notification_settings
WHERE namespace = $1 AND kind = $2 AND ($3::text IS NULL OR name > $3)
ORDER BY name
LIMIT $4
