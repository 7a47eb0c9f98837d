-- A namespace's quotas.
SELECT namespace, quotas, updated_at FROM keel_namespaces WHERE namespace = $1
