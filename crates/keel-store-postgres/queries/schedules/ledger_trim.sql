-- Keeps a schedule's newest ledger rows.
DELETE FROM keel_schedule_ledger WHERE namespace = $1 AND schedule = $2 AND seq <= $3
