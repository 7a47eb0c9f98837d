-- Revokes a token; a second revoke keeps the first time.
UPDATE keel_tokens SET revoked_at = coalesce(revoked_at, $2)
WHERE id = $1
RETURNING id, name, role, namespaces, resources, secret_hash, created_at, expires_at,
          last_used_at, revoked_at
