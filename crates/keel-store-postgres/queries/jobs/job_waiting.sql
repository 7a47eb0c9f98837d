-- What could hold an unfinished job back: its state and due time, its
-- queue's pause switch, concurrency bound with the jobs leased now and rate
-- limit with its state, when it does not hold its ordering key the job that
-- does, and its flow key with that key's jobs leased now and their bound,
-- the key's rate limit with its state, and (in a fair-share queue) the job's
-- place among its key's ready jobs.
SELECT j.state, j.run_at, j.ordering_key,
       coalesce(q.paused, false),
       (q.policy->>'max_concurrency')::bigint,
       (SELECT count(*) FROM keel_jobs l
        WHERE l.namespace = j.namespace AND l.queue = j.queue AND l.state = 'leased'),
       (SELECT h.id FROM keel_jobs h
        WHERE NOT j.runnable AND h.namespace = j.namespace AND h.queue = j.queue
          AND h.ordering_key = j.ordering_key AND h.finished_at IS NULL AND h.runnable
        LIMIT 1),
       (q.policy->'rate_limit')::text,
       coalesce(q.rate_tat, 0),
       coalesce(j.flow_key, ''),
       (SELECT count(*) FROM keel_jobs l
        WHERE q.policy ? 'key' AND l.namespace = j.namespace AND l.queue = j.queue
          AND l.state = 'leased' AND coalesce(l.flow_key, '') = coalesce(j.flow_key, '')),
       (q.policy->>'max_key_concurrency')::bigint,
       coalesce(q.policy ? 'key', false),
       (q.policy->'key_rate_limit')::text,
       coalesce((SELECT f.rate_tat FROM keel_flow_keys f
                 WHERE f.namespace = j.namespace AND f.queue = j.queue AND f.key = j.flow_key), 0),
       CASE WHEN q.policy ? 'fairness' AND j.state = 'ready' THEN 1 + (
           SELECT count(*) FROM keel_jobs w
           WHERE w.namespace = j.namespace AND w.queue = j.queue AND w.state = 'ready'
             AND w.runnable AND w.flow_key = j.flow_key
             AND (-w.priority, w.run_at, w.seq) < (-j.priority, j.run_at, j.seq))
       END
FROM keel_jobs j
LEFT JOIN keel_queues q ON q.namespace = j.namespace AND q.queue = j.queue
WHERE j.id = $1 AND j.namespace = $2
