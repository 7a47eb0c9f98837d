-- Writes what keel-core decided for a batch of jobs, in one statement.
UPDATE keel_jobs j
SET state = u.state, attempt = u.attempt, run_at = u.run_at, lease_seq = u.lease_seq,
    lease_expires_at = u.lease_expires_at, updated_at = $9, finished_at = u.finished_at,
    result = coalesce(u.result, j.result)
FROM unnest($1::uuid[], $2::text[], $3::int[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::text[])
     AS u(id, state, attempt, run_at, lease_seq, lease_expires_at, finished_at, result)
WHERE j.id = u.id
