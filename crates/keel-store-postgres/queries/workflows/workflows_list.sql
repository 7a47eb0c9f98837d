-- The latest version of every workflow of a namespace, by name.
SELECT DISTINCT ON (name) name, version, definition, created_at
FROM keel_workflows
WHERE namespace = $1
ORDER BY name, version DESC
