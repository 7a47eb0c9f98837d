-- Records a use; last_used_at never moves back.
UPDATE keel_tokens SET last_used_at = greatest(coalesce(last_used_at, $2), $2)
WHERE id = $1
