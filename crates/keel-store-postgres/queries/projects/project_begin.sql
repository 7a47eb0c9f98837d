-- Written only on top of the version the plan saw ($2 - 1, 0: none), and
-- never while one applies; two applies racing for the same number meet at
-- the primary key, and the loser writes nothing.
INSERT INTO keel_project_versions (project, version, state, body, created_at)
SELECT $1::text, $2::bigint, 'applying', $3::text, $4::bigint
WHERE COALESCE((SELECT max(version) FROM keel_project_versions WHERE project = $1::text), 0) = $2::bigint - 1
  AND NOT EXISTS (SELECT 1 FROM keel_project_versions WHERE project = $1::text AND state = 'applying')
ON CONFLICT DO NOTHING
