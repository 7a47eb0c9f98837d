-- After a keyed lease: the served keys' new virtual times and rate-limit
-- states ($3 keys, $4 times, $6 rate states) and the queue's fair-share
-- clock ($5).
WITH clock AS (
    UPDATE keel_queues SET fair_clock = $5 WHERE namespace = $1 AND queue = $2
)
INSERT INTO keel_flow_keys (namespace, queue, key, vtime, rate_tat)
SELECT $1, $2, k, v, t FROM unnest($3::text[], $4::bigint[], $6::bigint[]) AS u(k, v, t)
ON CONFLICT (namespace, queue, key) DO UPDATE SET vtime = excluded.vtime, rate_tat = excluded.rate_tat
