SELECT body FROM keel_incidents WHERE namespace = $1 AND id = $2
