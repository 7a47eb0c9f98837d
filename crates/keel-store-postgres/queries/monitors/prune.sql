-- Deletes results and hours past their keeping, a bounded batch of each.
WITH results AS (
    DELETE FROM keel_monitor_results WHERE seq IN
        (SELECT seq FROM keel_monitor_results WHERE at < $1 LIMIT $3)
    RETURNING 1
), hours AS (
    DELETE FROM keel_monitor_hours WHERE (namespace, monitor, hour) IN
        (SELECT namespace, monitor, hour FROM keel_monitor_hours WHERE hour < $2 LIMIT $3)
    RETURNING 1
)
SELECT (SELECT count(*) FROM results) + (SELECT count(*) FROM hours)
