SELECT coalesce(max(version), 0) + 1 FROM keel_handler_versions WHERE namespace = $1 AND name = $2
