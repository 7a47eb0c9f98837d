-- Compare and set of a run's journal together with the jobs it starts, as one
-- statement: one round trip that commits on its own, where a transaction
-- took four (BEGIN, UPDATE, INSERT, COMMIT). The jobs are written only if the
-- revision matched. $1–$16 are insert_rows.sql's, whose INSERT follows this
-- head as the `jobs` CTE (src/jobs/rows.rs: RUN_UPDATE_WITH_JOBS); returns
-- the new revision, or no row when the run changed or is gone.
WITH run AS (
    UPDATE keel_runs
    SET status = $17, state = $18, updated_at = $13, rev = rev + 1,
        finished_at = CASE WHEN $17::text = 'running' THEN NULL ELSE $13::bigint END
    WHERE id = $19 AND namespace = $20 AND rev = $21
    RETURNING rev
), jobs AS (
