SELECT min(due_at) FROM keel_schedules WHERE due_at IS NOT NULL
