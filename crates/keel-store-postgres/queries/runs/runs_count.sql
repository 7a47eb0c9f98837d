-- A namespace's running runs (keel_runs_running) and the runs that ended
-- since $2 (keel_runs_finished), by status.
SELECT 'running', COUNT(*) FROM keel_runs WHERE status = 'running' AND namespace = $1
UNION ALL
SELECT status, COUNT(*) FROM keel_runs
WHERE finished_at >= $2 AND namespace = $1
GROUP BY status
