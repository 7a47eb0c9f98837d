-- Writes what keel-core decided. $9 is the result (complete only).
UPDATE keel_jobs
SET state = $2, attempt = $3, run_at = $4, lease_seq = $5, lease_expires_at = $6,
    updated_at = $7, finished_at = $8, result = coalesce($9, result)
WHERE id = $1
