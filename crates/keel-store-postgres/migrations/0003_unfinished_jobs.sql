-- Unfinished jobs per namespace, for the namespace bound: counting them no
-- longer reads every finished job too.
CREATE INDEX keel_jobs_unfinished ON keel_jobs (namespace) WHERE finished_at IS NULL;
