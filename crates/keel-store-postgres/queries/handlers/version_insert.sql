INSERT INTO keel_handler_versions (namespace, name, version, kind, hash, source, artifact, settings, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
