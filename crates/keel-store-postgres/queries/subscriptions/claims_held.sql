SELECT count(*) FROM keel_claims
WHERE namespace = $1 AND subscription = $2 AND cursor = $3 AND consumer = $4
