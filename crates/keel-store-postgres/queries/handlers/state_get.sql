SELECT key, value, version FROM keel_object_state
WHERE namespace = $1 AND type = $2 AND object = $3 AND key = ANY($4)
ORDER BY key
