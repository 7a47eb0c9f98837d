-- Every namespace with quotas set.
SELECT namespace, quotas, updated_at FROM keel_namespaces ORDER BY namespace
