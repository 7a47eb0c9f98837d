-- What an inbox gained after a seq, oldest first (a stream's resume).
SELECT seq, delivery, notification, category, content, created_at, seen_at, read_at, archived_at
FROM keel_inbox
WHERE namespace = $1 AND recipient = $2 AND seq > $3
ORDER BY seq LIMIT $4
