-- The job of a debounce key that still waits for its first attempt within
-- its window (`run_at` is the window's end), locked so that no promotion
-- moves it while its payload is replaced. The caller holds the key's
-- advisory lock, so no other enqueue looks at the same time.
-- $1 namespace, $2 queue, $3 key, $4 now.
SELECT id FROM keel_jobs
WHERE namespace = $1 AND queue = $2 AND debounce_key = $3
  AND state = 'scheduled' AND attempt = 0 AND run_at > $4
FOR UPDATE
