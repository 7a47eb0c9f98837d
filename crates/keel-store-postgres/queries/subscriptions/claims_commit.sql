UPDATE keel_claims SET done = true
WHERE namespace = $1 AND subscription = $2 AND cursor = $3 AND consumer = $4 AND NOT done
