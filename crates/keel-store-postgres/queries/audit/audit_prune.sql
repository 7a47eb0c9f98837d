-- The oldest entries past retention, a bounded batch at a time.
DELETE FROM keel_audit
WHERE id IN (SELECT id FROM keel_audit WHERE at < $1 ORDER BY at LIMIT $2)
