INSERT INTO keel_monitor_results (namespace, monitor, at, body) VALUES ($1, $2, $3, $4)
