-- Releases claims past their deadline: their events go out again.
DELETE FROM keel_claims WHERE namespace = $1 AND subscription = $2 AND NOT done AND deadline <= $3
