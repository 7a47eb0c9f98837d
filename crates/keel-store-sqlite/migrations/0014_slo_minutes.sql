-- SLO counts per queue and minute (minutes since the epoch), as every
-- writer added them up; the wait histogram is a JSON array of bucket
-- counts (keel_core::slo::WAIT_BOUNDS_MS). Pruned after the budget's period.
CREATE TABLE slo_minutes (
    namespace TEXT    NOT NULL,
    queue     TEXT    NOT NULL,
    minute    INTEGER NOT NULL,
    waits     INTEGER NOT NULL,
    slow      INTEGER NOT NULL,
    succeeded INTEGER NOT NULL,
    dead      INTEGER NOT NULL,
    histogram TEXT    NOT NULL,
    PRIMARY KEY (namespace, queue, minute)
) WITHOUT ROWID;
CREATE INDEX slo_minutes_by_minute ON slo_minutes (minute);
