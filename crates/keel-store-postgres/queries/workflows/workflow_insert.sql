INSERT INTO keel_workflows (namespace, name, version, definition, created_at)
VALUES ($1, $2, $3, $4, $5)
