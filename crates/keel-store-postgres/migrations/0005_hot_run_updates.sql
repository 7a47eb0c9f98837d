-- A run's journal is rewritten at every step. Such an update can be a HOT
-- update (a new row version on the same page, no new index entries) only if
-- it changes no indexed column, and `updated_at` was indexed for pruning. So
-- runs say when they finished in a column of their own, set once, and pages
-- keep room for the row versions of those updates.
ALTER TABLE keel_runs ADD COLUMN finished_at bigint;
UPDATE keel_runs SET finished_at = updated_at WHERE status <> 'running';
DROP INDEX keel_runs_finished;
CREATE INDEX keel_runs_finished ON keel_runs (finished_at) WHERE finished_at IS NOT NULL;
ALTER TABLE keel_runs SET (fillfactor = 70);
