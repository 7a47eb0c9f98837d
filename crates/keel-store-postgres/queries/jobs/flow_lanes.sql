-- The keys of a keyed queue that have ready jobs, found by a loose scan of
-- keel_jobs_flow_ready (one probe per key, whatever the backlog behind each),
-- with each key's virtual time, jobs leased now, ready jobs and rate-limit
-- state, in the order of the fair share. The caller holds the queue's row.
-- $1 namespace, $2 queue, $3 most jobs wanted, $4 whether the queue bounds
-- its keys (`max_key_concurrency`): only then are each key's leased jobs
-- counted (a third of the statement's time with a few thousand leased).
--
-- A key's ready jobs are counted up to twice its even part of the lease
-- (`cap`), so a lease reads about twice what it hands out however long the
-- keys' backlogs: counting each key up to $3 read every backlog whole once
-- the keys were many. The price: when a few keys hold most of the jobs and
-- the others only one or two, a lease may hand out fewer than $3; the next
-- lease goes on.
WITH RECURSIVE ready_keys(key) AS (
    (SELECT flow_key FROM keel_jobs
     WHERE namespace = $1 AND queue = $2 AND state = 'ready' AND runnable AND flow_key IS NOT NULL
     ORDER BY flow_key LIMIT 1)
    UNION ALL
    SELECT (SELECT flow_key FROM keel_jobs
            WHERE namespace = $1 AND queue = $2 AND state = 'ready' AND runnable AND flow_key > r.key
            ORDER BY flow_key LIMIT 1)
    FROM ready_keys r
    WHERE r.key IS NOT NULL
),
keys AS (SELECT key FROM ready_keys WHERE key IS NOT NULL),
cap AS (SELECT greatest(1, (2 * $3::bigint + count(*) - 1) / greatest(count(*), 1)) AS n FROM keys)
SELECT k.key, coalesce(f.vtime, 0),
       CASE WHEN $4::boolean THEN
           (SELECT count(*) FROM keel_jobs l
            WHERE l.namespace = $1 AND l.queue = $2 AND l.state = 'leased' AND l.flow_key = k.key)
       ELSE 0 END,
       (SELECT count(*) FROM (SELECT 1 FROM keel_jobs w
                              WHERE w.namespace = $1 AND w.queue = $2 AND w.state = 'ready'
                                AND w.runnable AND w.flow_key = k.key
                              ORDER BY w.priority DESC, w.run_at, w.seq
                              LIMIT cap.n) c),
       coalesce(f.rate_tat, 0)
FROM keys k
CROSS JOIN cap
LEFT JOIN keel_flow_keys f ON f.namespace = $1 AND f.queue = $2 AND f.key = k.key
ORDER BY 2, 1
