-- Claims at or below the position are done with.
DELETE FROM keel_claims WHERE namespace = $1 AND subscription = $2 AND seq <= $3
