-- Finished jobs past their queue's retention (dead ones past dead retention);
-- their errors go with them (ON DELETE CASCADE). $2, $3: the default retentions.
WITH gone AS (
    DELETE FROM keel_jobs
    WHERE id IN (
        SELECT j.id FROM keel_jobs j
        LEFT JOIN keel_queues q ON q.namespace = j.namespace AND q.queue = j.queue
        WHERE j.finished_at IS NOT NULL
          AND j.finished_at <= $1 - CASE WHEN j.state = 'dead'
                THEN coalesce((q.policy ->> 'dead_retention_ms')::bigint, $3)
                ELSE coalesce((q.policy ->> 'retention_ms')::bigint, $2) END
        LIMIT $4)
    RETURNING 1
)
SELECT count(*) FROM gone
