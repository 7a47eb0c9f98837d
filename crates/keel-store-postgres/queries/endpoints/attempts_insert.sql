-- A batch of attempts in one statement, one array per column.
INSERT INTO keel_endpoint_attempts
    (namespace, endpoint, message_id, job_id, at, succeeded, http_status, latency_ms, response_excerpt, error)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::bigint[], $6::boolean[],
                     $7::integer[], $8::bigint[], $9::text[], $10::text[])
