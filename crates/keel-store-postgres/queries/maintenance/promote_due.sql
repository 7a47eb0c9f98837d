UPDATE keel_jobs j SET state = 'ready', updated_at = $1
FROM (SELECT id FROM keel_jobs WHERE state = 'scheduled' AND run_at <= $1
      ORDER BY run_at LIMIT $2 FOR UPDATE SKIP LOCKED) due
WHERE j.id = due.id
RETURNING j.namespace, j.queue
