-- A new run without an idempotency key together with the jobs of its first
-- steps, as one statement: one round trip that commits on its own. $1–$16
-- are insert_rows.sql's, whose INSERT follows this head as the `jobs` CTE
-- (src/jobs/rows.rs: RUN_INSERT_WITH_JOBS).
WITH run AS (
    INSERT INTO keel_runs (id, namespace, workflow, version, status, input, state, idempotency_key,
                           created_at, updated_at, rev)
    VALUES ($17, $18, $19, $20, $21, $22, $23, NULL, $13, $13, 1)
    RETURNING seq
), jobs AS (
