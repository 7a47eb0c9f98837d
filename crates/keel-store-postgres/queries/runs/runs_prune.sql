-- Finished runs that finished at or before $1, oldest first, at most $2.
WITH gone AS (
    DELETE FROM keel_runs
    WHERE id IN (SELECT id FROM keel_runs WHERE finished_at <= $1 ORDER BY finished_at LIMIT $2)
    RETURNING 1
)
SELECT count(*) FROM gone
