-- Kept events after a seq, optionally of one key and one type, in seq order.
SELECT seq, id, type, source, key, time, data, headers, published_at FROM keel_events
WHERE namespace = $1 AND topic = $2 AND seq > $3
  AND ($4::text IS NULL OR key = $4) AND ($5::text IS NULL OR type = $5)
ORDER BY seq LIMIT $6
