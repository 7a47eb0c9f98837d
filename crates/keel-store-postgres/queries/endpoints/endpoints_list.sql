SELECT namespace, name, spec, secrets, health, created_at, updated_at
FROM keel_endpoints
WHERE $1::text IS NULL OR namespace = $1
ORDER BY namespace, name
