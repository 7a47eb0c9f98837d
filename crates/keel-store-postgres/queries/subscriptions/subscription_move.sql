-- Sets the position and adds to the counts.
UPDATE keel_subscriptions
SET position = $3, delivered = delivered + $4, skipped = skipped + $5
WHERE namespace = $1 AND name = $2
