UPDATE keel_endpoints
SET secrets = $3, health = $4, updated_at = $5
WHERE namespace = $1 AND name = $2
