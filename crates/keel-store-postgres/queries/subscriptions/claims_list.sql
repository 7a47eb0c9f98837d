SELECT seq, key, done FROM keel_claims WHERE namespace = $1 AND subscription = $2
