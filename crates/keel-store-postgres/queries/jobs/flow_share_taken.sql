-- After a keyed lease: the keys' new virtual times ($3 keys, $4 times) and
-- the queue's fair-share clock ($5).
WITH clock AS (
    UPDATE keel_queues SET fair_clock = $5 WHERE namespace = $1 AND queue = $2
)
INSERT INTO keel_flow_keys (namespace, queue, key, vtime)
SELECT $1, $2, k, v FROM unnest($3::text[], $4::bigint[]) AS u(k, v)
ON CONFLICT (namespace, queue, key) DO UPDATE SET vtime = excluded.vtime
