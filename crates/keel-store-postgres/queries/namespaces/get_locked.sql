-- A namespace's quotas, its row locked until the transaction ends (makes
-- counted against a quota from any node, one after the other).
SELECT namespace, quotas, updated_at FROM keel_namespaces WHERE namespace = $1 FOR UPDATE
