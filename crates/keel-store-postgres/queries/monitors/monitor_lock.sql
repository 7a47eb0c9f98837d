-- A monitor under its row lock: results for it fold one after another.
SELECT name, spec, token, state, incident, created_at, updated_at
FROM keel_monitors WHERE namespace = $1 AND name = $2 FOR UPDATE
