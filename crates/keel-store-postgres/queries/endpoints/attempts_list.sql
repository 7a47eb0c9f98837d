-- An endpoint's attempts, newest first, before an id and of an outcome.
SELECT id, namespace, endpoint, message_id, job_id, at, succeeded, http_status, latency_ms,
       response_excerpt, error
FROM keel_endpoint_attempts
WHERE namespace = $1 AND endpoint = $2
  AND ($3::bigint IS NULL OR id < $3)
  AND ($4::boolean IS NULL OR succeeded = $4)
ORDER BY id DESC
LIMIT $5
