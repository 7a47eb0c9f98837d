INSERT INTO keel_monitor_hours (namespace, monitor, hour, up, down) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (namespace, monitor, hour) DO UPDATE
SET up = keel_monitor_hours.up + EXCLUDED.up, down = keel_monitor_hours.down + EXCLUDED.down
