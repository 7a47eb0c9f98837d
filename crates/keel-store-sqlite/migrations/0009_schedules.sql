-- Schedules: the spec and the moving state as JSON; `due_at` (when the timer
-- looks next) and `rev` (every write names the one it read) as columns.
CREATE TABLE schedules (
    namespace  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    state      TEXT    NOT NULL,
    due_at     INTEGER,
    rev        INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;
CREATE INDEX schedules_due ON schedules (due_at) WHERE due_at IS NOT NULL;

-- The ledger: one row per slot, keyed by its nominal time, so a slot has one
-- fate; the newest rows of each schedule are kept (by `seq`).
CREATE TABLE schedule_ledger (
    namespace TEXT    NOT NULL,
    schedule  TEXT    NOT NULL,
    nominal   INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    outcome   TEXT    NOT NULL,
    fired_at  INTEGER,
    target_id TEXT,
    PRIMARY KEY (namespace, schedule, nominal)
) WITHOUT ROWID;
CREATE INDEX schedule_ledger_seq ON schedule_ledger (namespace, schedule, seq);
