-- The first kept event after $3.
SELECT min(seq) FROM keel_events WHERE namespace = $1 AND topic = $2 AND seq > $3
