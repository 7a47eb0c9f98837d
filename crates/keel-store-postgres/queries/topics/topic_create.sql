-- Creates a topic with a policy unless it exists; true when it was made.
INSERT INTO keel_topics (namespace, name, retention_ms, dedup_window_ms, max_event_bytes,
                         head_seq, events, created_at, slo)
VALUES ($1, $2, $3, $4, $5, 0, 0, $6, $7)
ON CONFLICT (namespace, name) DO NOTHING
