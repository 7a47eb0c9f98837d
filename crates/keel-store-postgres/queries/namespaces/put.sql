-- Sets a namespace's quotas.
INSERT INTO keel_namespaces (namespace, quotas, updated_at) VALUES ($1, $2, $3)
ON CONFLICT (namespace) DO UPDATE SET quotas = $2, updated_at = $3
