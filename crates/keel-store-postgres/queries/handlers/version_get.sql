SELECT namespace, name, version, kind, hash, source, artifact, settings, created_at
FROM keel_handler_versions
WHERE namespace = $1 AND name = $2
  AND version = coalesce($3::integer, (SELECT version FROM keel_handlers WHERE namespace = $1 AND name = $2))
