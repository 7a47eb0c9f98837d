-- A delivery's in-app message, once: the next seq of the recipient's inbox
-- (the caller holds the recipient's advisory lock), nothing when the
-- delivery has one already.
INSERT INTO keel_inbox (namespace, recipient, seq, delivery, notification, category, content, created_at)
SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, $5, $6, $7
FROM keel_inbox WHERE namespace = $1 AND recipient = $2
ON CONFLICT (namespace, delivery) DO NOTHING
RETURNING seq
