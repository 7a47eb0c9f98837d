-- Debounce keys: an enqueue finds the job of its key that still waits for its
-- first attempt; only such jobs are in the index.
ALTER TABLE keel_jobs ADD COLUMN debounce_key text;
CREATE INDEX keel_jobs_debounce ON keel_jobs (namespace, queue, debounce_key)
    WHERE debounce_key IS NOT NULL AND state = 'scheduled' AND attempt = 0;

-- Flow keys: a job's key under its queue's `key` policy (a tag's value or its
-- ordering key, '' for none; null in a queue without one), computed by the
-- statements that write jobs and by a policy change, from the queue's row.
CREATE FUNCTION keel_flow_key(policy jsonb, tags jsonb, ordering_key text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE
        WHEN policy->>'key' = 'ordering_key' THEN coalesce(ordering_key, '')
        WHEN policy->>'key' LIKE 'tag:%' THEN coalesce(tags->>substr(policy->>'key', 5), '')
    END
$$;
ALTER TABLE keel_jobs ADD COLUMN flow_key text;
-- A keyed lease finds each key's next jobs, and the keys with ready jobs
-- (a loose scan: one probe per key), through this index.
CREATE INDEX keel_jobs_flow_ready ON keel_jobs (namespace, queue, flow_key, priority DESC, run_at, seq)
    WHERE state = 'ready' AND runnable AND flow_key IS NOT NULL;
-- Jobs leased per queue and per key, for the concurrency bounds.
CREATE INDEX keel_jobs_leased_by_queue ON keel_jobs (namespace, queue, flow_key)
    WHERE state = 'leased';
-- Each key's virtual time in the queue's fair share, and the queue's clock.
CREATE TABLE keel_flow_keys (
    namespace text   NOT NULL,
    queue     text   NOT NULL,
    key       text   NOT NULL,
    vtime     bigint NOT NULL,
    PRIMARY KEY (namespace, queue, key)
);
ALTER TABLE keel_queues ADD COLUMN fair_clock bigint NOT NULL DEFAULT 0;
