-- Finished runs by when they finished, for pruning past the run retention.
CREATE INDEX keel_runs_finished ON keel_runs (updated_at) WHERE status <> 'running';
