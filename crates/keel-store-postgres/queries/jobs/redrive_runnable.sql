-- A dead keyed job about to be redriven holds its key again only if no
-- unfinished job of the key does (it is finished itself until the redrive is
-- written). The caller holds the key's lock.
UPDATE keel_jobs j
SET runnable = NOT EXISTS (
    SELECT 1 FROM keel_jobs o
    WHERE o.namespace = j.namespace AND o.queue = j.queue
      AND o.ordering_key = j.ordering_key AND o.finished_at IS NULL)
WHERE j.id = $1
