SELECT seq FROM keel_inbox WHERE namespace = $1 AND delivery = $2
