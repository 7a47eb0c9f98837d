-- From `$4` (inclusive when `$5`) up to `$6` (exclusive, none: no end).
SELECT key, value, version FROM keel_object_state
WHERE namespace = $1 AND type = $2 AND object = $3
  AND (key > $4 OR ($5 AND key = $4))
  AND ($6::text IS NULL OR key < $6)
ORDER BY key
LIMIT $7
