-- A page of an inbox, newest first, archived left out.
SELECT seq, delivery, notification, category, content, created_at, seen_at, read_at, archived_at
FROM keel_inbox
WHERE namespace = $1 AND recipient = $2 AND archived_at IS NULL AND ($3::bigint IS NULL OR seq < $3)
ORDER BY seq DESC LIMIT $4
