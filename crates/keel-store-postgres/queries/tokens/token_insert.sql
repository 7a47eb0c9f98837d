-- A new token; the id is fresh and random.
INSERT INTO keel_tokens (id, name, role, namespaces, resources, secret_hash, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
