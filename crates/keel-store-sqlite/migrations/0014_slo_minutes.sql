-- SLO counts per queue or topic and minute (minutes since the epoch), as
-- every writer added them up; the wait histogram is a JSON array of bucket
-- counts (keel_core::slo::WAIT_BOUNDS_MS). Pruned after the budget's
-- period. A topic's objectives live beside its policy, as JSON.
CREATE TABLE slo_minutes (
    namespace TEXT    NOT NULL,
    kind      TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    minute    INTEGER NOT NULL,
    waits     INTEGER NOT NULL,
    slow      INTEGER NOT NULL,
    succeeded INTEGER NOT NULL,
    failed    INTEGER NOT NULL,
    histogram TEXT    NOT NULL,
    PRIMARY KEY (namespace, kind, name, minute)
) WITHOUT ROWID;
CREATE INDEX slo_minutes_by_minute ON slo_minutes (minute);
ALTER TABLE topics ADD COLUMN slo TEXT;
