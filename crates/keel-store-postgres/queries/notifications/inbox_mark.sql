-- Sets seen_at, read_at or archived_at ($3) on the messages $5 (all when
-- null) that do not have it yet.
UPDATE keel_inbox SET
    seen_at = CASE WHEN $3 = 'seen' THEN $4 ELSE seen_at END,
    read_at = CASE WHEN $3 = 'read' THEN $4 ELSE read_at END,
    archived_at = CASE WHEN $3 = 'archived' THEN $4 ELSE archived_at END
WHERE namespace = $1 AND recipient = $2
  AND ($5::bigint[] IS NULL OR seq = ANY($5))
  AND (CASE $3 WHEN 'seen' THEN seen_at WHEN 'read' THEN read_at ELSE archived_at END) IS NULL
