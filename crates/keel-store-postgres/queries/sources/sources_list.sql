SELECT namespace, name, spec, created_at, updated_at
FROM keel_sources WHERE namespace = $1 ORDER BY name
