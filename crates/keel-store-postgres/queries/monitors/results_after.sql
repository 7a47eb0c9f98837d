SELECT seq, body FROM keel_monitor_results
WHERE namespace = $1 AND monitor = $2 AND seq > $3 ORDER BY seq LIMIT $4
