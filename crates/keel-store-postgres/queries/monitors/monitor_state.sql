UPDATE keel_monitors SET state = $3, incident = $4 WHERE namespace = $1 AND name = $2
