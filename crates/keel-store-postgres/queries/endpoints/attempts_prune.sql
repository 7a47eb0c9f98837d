-- Up to $2 attempts older than $1: bounded, so a long backlog is deleted
-- in chunks that never hold locks for long.
DELETE FROM keel_endpoint_attempts
WHERE id IN (SELECT id FROM keel_endpoint_attempts WHERE at < $1 LIMIT $2)
