-- Deletes a monitor with its results and uptime; answers a row when it was there.
WITH gone AS (
    DELETE FROM keel_monitors WHERE namespace = $1 AND name = $2 RETURNING name
), results AS (
    DELETE FROM keel_monitor_results WHERE namespace = $1 AND monitor = $2
        AND EXISTS (SELECT 1 FROM gone)
), hours AS (
    DELETE FROM keel_monitor_hours WHERE namespace = $1 AND monitor = $2
        AND EXISTS (SELECT 1 FROM gone)
)
SELECT name FROM gone
