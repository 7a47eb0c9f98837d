SELECT name, spec, token, state, incident, created_at, updated_at
FROM keel_monitors WHERE namespace = $1 AND ($2::text IS NULL OR name > $2)
ORDER BY name LIMIT $3
