DELETE FROM keel_notification_settings
WHERE namespace = $1 AND kind = ANY($2) AND name = $3
