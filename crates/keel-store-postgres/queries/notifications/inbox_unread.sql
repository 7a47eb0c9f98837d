SELECT COUNT(*) FROM keel_inbox
WHERE namespace = $1 AND recipient = $2 AND read_at IS NULL AND archived_at IS NULL
