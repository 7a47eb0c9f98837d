-- Debounce keys: an enqueue finds the job of its key that still waits for its
-- first attempt; only such jobs are in the index.
ALTER TABLE jobs ADD COLUMN debounce_key TEXT;
CREATE INDEX jobs_debounce ON jobs (namespace, queue, debounce_key)
    WHERE debounce_key IS NOT NULL AND state = 'scheduled' AND attempt = 0;
-- A job's flow key, taken at enqueue from its queue's `key` policy (the hot
-- index shares the queue between keys; null is the key '').
ALTER TABLE jobs ADD COLUMN flow_key TEXT;
