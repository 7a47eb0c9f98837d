INSERT INTO keel_job_errors (job_id, attempt, message, at) VALUES ($1, $2, $3, $4)
