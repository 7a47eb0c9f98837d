SELECT version FROM keel_handlers WHERE namespace = $1 AND name = $2 FOR UPDATE
