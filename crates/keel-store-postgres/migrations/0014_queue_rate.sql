-- A queue's rate limit state: the GCRA's theoretical arrival time in µs,
-- written by leases under the queue's advisory lock, so the limit holds
-- across nodes.
ALTER TABLE keel_queues ADD COLUMN rate_tat bigint NOT NULL DEFAULT 0;
