UPDATE keel_audit SET outcome = $2 WHERE id = $1 AND outcome IS NULL
