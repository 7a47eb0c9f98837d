-- Every version of a workflow oldest first, or the one asked for.
SELECT version, definition, created_at
FROM keel_workflows
WHERE namespace = $1 AND name = $2 AND ($3::integer IS NULL OR version = $3)
ORDER BY version
