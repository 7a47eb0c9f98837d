SELECT name, retention_ms, dedup_window_ms, max_event_bytes, head_seq, events, created_at, slo
FROM keel_topics WHERE namespace = $1 ORDER BY name
