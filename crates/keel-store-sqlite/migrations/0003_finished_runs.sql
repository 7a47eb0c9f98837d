-- Finished runs by when they finished, for pruning past the run retention.
CREATE INDEX runs_finished ON runs (updated_at) WHERE status <> 'running';
