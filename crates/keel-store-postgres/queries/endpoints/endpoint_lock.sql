-- The endpoint, locked until the transaction ends: rotating, disabling and
-- recording attempts read it, change it in Rust and write it back.
SELECT namespace, name, spec, secrets, health, created_at, updated_at
FROM keel_endpoints
WHERE namespace = $1 AND name = $2
FOR UPDATE
