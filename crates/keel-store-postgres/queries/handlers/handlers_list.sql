SELECT h.name, h.version, v.kind, v.hash, h.created_at, h.updated_at
FROM keel_handlers h
JOIN keel_handler_versions v ON v.namespace = h.namespace AND v.name = h.name AND v.version = h.version
WHERE h.namespace = $1
ORDER BY h.name
