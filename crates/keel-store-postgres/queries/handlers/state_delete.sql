DELETE FROM keel_object_state WHERE namespace = $1 AND type = $2 AND object = $3 AND key = $4
