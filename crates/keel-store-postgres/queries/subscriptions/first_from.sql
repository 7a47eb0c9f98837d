-- The first kept event published at or after $3.
SELECT min(seq) FROM keel_events WHERE namespace = $1 AND topic = $2 AND published_at >= $3
