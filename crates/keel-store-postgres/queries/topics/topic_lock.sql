-- The topic's row, locked until the transaction ends: publishers of one
-- topic take seqs one after another and commit in that order.
SELECT retention_ms, dedup_window_ms, max_event_bytes, head_seq
FROM keel_topics WHERE namespace = $1 AND name = $2
FOR UPDATE
