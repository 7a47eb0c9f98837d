SELECT bytes, seq FROM keel_objects WHERE namespace = $1 AND type = $2 AND key = $3 FOR UPDATE
