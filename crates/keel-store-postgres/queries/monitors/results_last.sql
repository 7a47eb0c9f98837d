SELECT seq, body FROM keel_monitor_results
WHERE namespace = $1 AND monitor = $2 ORDER BY seq DESC LIMIT $3
