-- After a batch's insert, one row per job its debounce keys touch: $2 the key
-- of a new job that opens a window, $3 the last payload of a job that
-- collapsed enqueues (either may be null). $4 is now. A statement of its own,
-- so that insert_jobs.sql (which other statements embed) keeps its parameters.
UPDATE keel_jobs j
SET debounce_key = coalesce(u.key, j.debounce_key),
    payload = coalesce(u.payload, j.payload),
    updated_at = $4
FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(id, key, payload)
WHERE j.id = u.id
