SELECT namespace, name, spec, secrets, health, created_at, updated_at
FROM keel_endpoints
WHERE namespace = $1 AND name = $2
