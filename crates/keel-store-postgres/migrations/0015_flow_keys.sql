-- Debounce keys: an enqueue finds the job of its key that still waits for its
-- first attempt; only such jobs are in the index.
ALTER TABLE keel_jobs ADD COLUMN debounce_key text;
CREATE INDEX keel_jobs_debounce ON keel_jobs (namespace, queue, debounce_key)
    WHERE debounce_key IS NOT NULL AND state = 'scheduled' AND attempt = 0;
