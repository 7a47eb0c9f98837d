UPDATE keel_handlers SET secrets = $3, updated_at = $4 WHERE namespace = $1 AND name = $2
