SELECT name, spec, token, state, incident, created_at, updated_at
FROM keel_monitors WHERE namespace = $1 AND name = $2
