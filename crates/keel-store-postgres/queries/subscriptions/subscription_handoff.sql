-- Moves the position only from where the caller read it (compare and set).
UPDATE keel_subscriptions
SET position = $4, delivered = delivered + $5, skipped = skipped + $6
WHERE namespace = $1 AND name = $2 AND position = $3
