SELECT seq, id, type, source, key, time, data, headers, published_at FROM keel_events
WHERE namespace = $1 AND topic = $2 AND seq > $3
ORDER BY seq LIMIT $4
