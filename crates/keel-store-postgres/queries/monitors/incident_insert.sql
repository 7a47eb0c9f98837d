-- Opens an incident unless one is unresolved under its dedup key (a
-- concurrent insert of the same key waits on it); answers a row when opened.
INSERT INTO keel_incidents (namespace, id, dedup_key, monitor, status, body, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (namespace, dedup_key) WHERE status <> 'resolved' DO NOTHING
RETURNING id
