-- A subject's counts summed over each window ($4: the windows' first minutes).
SELECT w.i, coalesce(sum(m.waits), 0)::bigint, coalesce(sum(m.slow), 0)::bigint,
       coalesce(sum(m.succeeded), 0)::bigint, coalesce(sum(m.failed), 0)::bigint
FROM unnest($4::bigint[]) WITH ORDINALITY AS w(start, i)
LEFT JOIN keel_slo_minutes m ON m.namespace = $1 AND m.kind = $2
     AND m.name = $3 AND m.minute >= w.start
GROUP BY w.i ORDER BY w.i
