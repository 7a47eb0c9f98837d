-- Takes the advisory locks of ordering keys (each `namespace/queue/key`) for
-- the transaction, in one order everywhere, so that two transactions never
-- wait on each other in a cycle. Every write that decides which job holds a
-- key (an enqueue, a finish, a redrive) takes its key's lock first: an
-- enqueue that did not see a finishing job's commit would otherwise leave its
-- job waiting behind a key no one holds.
SELECT count(pg_advisory_xact_lock(hashtextextended(k, 1)))
FROM (SELECT DISTINCT k FROM unnest($1::text[]) AS k ORDER BY k) keys
