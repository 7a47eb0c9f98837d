SELECT attempt, message, at FROM keel_job_errors WHERE job_id = $1 ORDER BY n
