SELECT id, name, role, namespaces, resources, secret_hash, created_at, expires_at,
       last_used_at, revoked_at
FROM keel_tokens
ORDER BY created_at DESC, id
