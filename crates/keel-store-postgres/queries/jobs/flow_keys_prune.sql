-- Forgets the fair-share and rate state of flow keys with nothing ready or
-- leased once their rate state has passed ($1, µs): a forgotten key restarts
-- at its queue's clock, at most one turn early, and the table does not keep
-- every key ever seen.
DELETE FROM keel_flow_keys f
WHERE f.rate_tat <= $1
  AND NOT EXISTS (SELECT 1 FROM keel_jobs j
                  WHERE j.namespace = f.namespace AND j.queue = f.queue AND j.state = 'ready'
                    AND j.runnable AND j.flow_key = f.key)
  AND NOT EXISTS (SELECT 1 FROM keel_jobs j
                  WHERE j.namespace = f.namespace AND j.queue = f.queue AND j.state = 'leased'
                    AND j.flow_key = f.key)
