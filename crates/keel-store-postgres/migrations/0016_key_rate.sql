-- Each flow key's rate-limit state (the GCRA's theoretical arrival time, µs)
-- under its queue's `key_rate_limit`, read and written under the queue's row
-- lock like its virtual time.
ALTER TABLE keel_flow_keys ADD COLUMN rate_tat bigint NOT NULL DEFAULT 0;
