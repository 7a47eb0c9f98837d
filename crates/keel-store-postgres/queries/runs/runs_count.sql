-- Runs of a namespace by status.
SELECT status, COUNT(*) FROM keel_runs WHERE namespace = $1 GROUP BY status
