INSERT INTO keel_job_errors (job_id, attempt, message, at)
SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::bigint[])
