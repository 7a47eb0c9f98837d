DELETE FROM keel_claims WHERE namespace = $1 AND subscription = $2
