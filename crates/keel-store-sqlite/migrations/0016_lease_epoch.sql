-- The lease epoch: bumped and synced at every open, before any lease is
-- handed out. A lease's fencing number is drawn from its epoch's range
-- (fence.rs), so no token handed out before a crash can match a job again.
CREATE TABLE lease_epoch (epoch INTEGER NOT NULL);
INSERT INTO lease_epoch (epoch) VALUES (0);
