-- Schedules: the spec and the moving state as JSON text; `due_at` (when the
-- timer looks next) and `rev` (every write names the one it read) as columns.
CREATE TABLE keel_schedules (
    namespace  text   NOT NULL,
    name       text   NOT NULL,
    spec       text   NOT NULL,
    state      text   NOT NULL,
    due_at     bigint,
    rev        bigint NOT NULL,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE INDEX keel_schedules_due ON keel_schedules (due_at) WHERE due_at IS NOT NULL;

-- The ledger: one row per slot, keyed by its nominal time, so a slot has one
-- fate; the newest rows of each schedule are kept (by `seq`).
CREATE TABLE keel_schedule_ledger (
    namespace text   NOT NULL,
    schedule  text   NOT NULL,
    nominal   bigint NOT NULL,
    seq       bigint NOT NULL,
    outcome   text   NOT NULL,
    fired_at  bigint,
    target_id text,
    PRIMARY KEY (namespace, schedule, nominal)
);
CREATE INDEX keel_schedule_ledger_seq ON keel_schedule_ledger (namespace, schedule, seq);
