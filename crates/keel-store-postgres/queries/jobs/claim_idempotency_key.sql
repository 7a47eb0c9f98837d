-- Claims an idempotency key for a new job, or takes it over once expired.
-- Returns no row when an unexpired claim exists: the caller dedupes to it.
INSERT INTO keel_idempotency (namespace, key, job_id, expires_at)
VALUES ($1, $2, $3, $4)
ON CONFLICT (namespace, key) DO UPDATE
    SET job_id = excluded.job_id, expires_at = excluded.expires_at
    WHERE keel_idempotency.expires_at <= $5
RETURNING job_id
