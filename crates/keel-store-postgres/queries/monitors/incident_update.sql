UPDATE keel_incidents SET status = $3, body = $4, updated_at = $5 WHERE namespace = $1 AND id = $2
