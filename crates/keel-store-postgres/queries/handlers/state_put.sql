INSERT INTO keel_object_state (namespace, type, object, key, value, version, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (namespace, type, object, key)
DO UPDATE SET value = excluded.value, version = excluded.version, updated_at = excluded.updated_at
