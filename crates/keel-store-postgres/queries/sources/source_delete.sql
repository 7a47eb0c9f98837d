DELETE FROM keel_sources WHERE namespace = $1 AND name = $2
