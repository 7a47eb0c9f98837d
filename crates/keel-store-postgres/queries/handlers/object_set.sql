UPDATE keel_objects SET bytes = $4, seq = $5 WHERE namespace = $1 AND type = $2 AND key = $3
