SELECT hour, up, down FROM keel_monitor_hours
WHERE namespace = $1 AND monitor = $2 AND hour >= $3 ORDER BY hour
