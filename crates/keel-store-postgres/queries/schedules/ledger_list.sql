SELECT nominal, fired_at, outcome, target_id, seq FROM keel_schedule_ledger
WHERE namespace = $1 AND schedule = $2
ORDER BY seq DESC
LIMIT $3
