SELECT DISTINCT ON (project) project, version, state, body, created_at, finished_at
FROM keel_project_versions
WHERE $1::text IS NULL OR state = $1
ORDER BY project, version DESC
