-- Keys whose runnable job finished: the oldest unfinished job of each key
-- becomes runnable, unless one already is (only the holder of a key frees it;
-- the unique index keel_jobs_one_runnable_per_key backs this up). The caller
-- holds the keys' locks. Returns the jobs that became runnable, so that
-- leasers of their queues wake.
UPDATE keel_jobs j SET runnable = true
FROM (SELECT n.id
      FROM unnest($1::text[], $2::text[], $3::text[]) AS k(namespace, queue, ordering_key)
      CROSS JOIN LATERAL (
          SELECT o.id FROM keel_jobs o
          WHERE o.namespace = k.namespace AND o.queue = k.queue
            AND o.ordering_key = k.ordering_key AND o.finished_at IS NULL
          ORDER BY o.seq LIMIT 1) n
      WHERE NOT EXISTS (
          SELECT 1 FROM keel_jobs r
          WHERE r.namespace = k.namespace AND r.queue = k.queue
            AND r.ordering_key = k.ordering_key AND r.finished_at IS NULL AND r.runnable)) h
WHERE j.id = h.id
RETURNING j.namespace, j.queue, j.state
