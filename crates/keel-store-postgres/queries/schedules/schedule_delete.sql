WITH gone AS (
    DELETE FROM keel_schedules WHERE namespace = $1 AND name = $2 RETURNING name
), ledger AS (
    DELETE FROM keel_schedule_ledger WHERE namespace = $1 AND schedule = $2
)
SELECT count(*) FROM gone
