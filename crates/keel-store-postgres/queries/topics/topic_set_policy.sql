UPDATE keel_topics SET retention_ms = $3, dedup_window_ms = $4, max_event_bytes = $5, slo = $6
WHERE namespace = $1 AND name = $2
