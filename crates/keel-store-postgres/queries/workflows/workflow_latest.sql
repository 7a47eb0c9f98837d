SELECT version, definition
FROM keel_workflows
WHERE namespace = $1 AND name = $2
ORDER BY version DESC
LIMIT 1
