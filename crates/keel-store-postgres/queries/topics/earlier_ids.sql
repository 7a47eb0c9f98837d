-- The latest seq of each of these ids published since $4 (the dedup window).
SELECT id, max(seq) FROM keel_events
WHERE namespace = $1 AND topic = $2 AND id = ANY($3) AND published_at >= $4
GROUP BY id
