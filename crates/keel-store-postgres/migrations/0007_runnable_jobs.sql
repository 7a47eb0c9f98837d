-- Per-key order without scanning the backlog (issue: leasing walked every
-- ready job and checked each for an older unfinished job of its key). A job
-- is `runnable` unless an older unfinished job of its ordering key holds the
-- key: exactly one unfinished job per key is runnable, which a unique index
-- enforces across nodes. Leasing reads only ready runnable jobs, through an
-- index, so its cost does not grow with the backlog. Writes that change who
-- holds a key take the key's advisory lock (queries/jobs/lock_keys.sql).
ALTER TABLE keel_jobs ADD COLUMN runnable boolean NOT NULL DEFAULT true;
-- Existing keyed jobs: the leased one holds its key, or else the oldest.
UPDATE keel_jobs j SET runnable = false
FROM (SELECT id, row_number() OVER (PARTITION BY namespace, queue, ordering_key
                                    ORDER BY (state = 'leased') DESC, seq) AS n
      FROM keel_jobs WHERE ordering_key IS NOT NULL AND finished_at IS NULL) r
WHERE j.id = r.id AND r.n > 1;
DROP INDEX keel_jobs_ready;
CREATE INDEX keel_jobs_ready ON keel_jobs (namespace, queue, priority DESC, run_at, seq)
    WHERE state = 'ready' AND runnable;
CREATE UNIQUE INDEX keel_jobs_one_runnable_per_key ON keel_jobs (namespace, queue, ordering_key)
    WHERE ordering_key IS NOT NULL AND finished_at IS NULL AND runnable;
-- Implied by the index above: a leased job is runnable.
DROP INDEX keel_jobs_one_leased_per_key;
