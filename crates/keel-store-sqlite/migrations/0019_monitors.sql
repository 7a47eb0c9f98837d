-- Monitors with their counters, their results (kept a while) and hourly
-- uptime (kept a year), and incidents: at most one unresolved per dedup key
-- (a monitor's is `monitor/{name}`), whatever writes them.
CREATE TABLE monitors (
    namespace  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    token      TEXT    NOT NULL UNIQUE,
    state      TEXT    NOT NULL,
    incident   BLOB,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;

CREATE TABLE monitor_results (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT    NOT NULL,
    monitor   TEXT    NOT NULL,
    at        INTEGER NOT NULL,
    body      TEXT    NOT NULL
);
CREATE INDEX monitor_results_of ON monitor_results (namespace, monitor, seq);
CREATE INDEX monitor_results_at ON monitor_results (at);

CREATE TABLE monitor_hours (
    namespace TEXT    NOT NULL,
    monitor   TEXT    NOT NULL,
    hour      INTEGER NOT NULL,
    up        INTEGER NOT NULL,
    down      INTEGER NOT NULL,
    PRIMARY KEY (namespace, monitor, hour)
) WITHOUT ROWID;
CREATE INDEX monitor_hours_at ON monitor_hours (hour);

CREATE TABLE incidents (
    namespace  TEXT    NOT NULL,
    id         BLOB    NOT NULL,
    dedup_key  TEXT    NOT NULL,
    monitor    TEXT,
    status     TEXT    NOT NULL,
    body       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX incidents_unresolved ON incidents (namespace, dedup_key)
    WHERE status <> 'resolved';
CREATE INDEX incidents_by_status ON incidents (namespace, status, id);
CREATE INDEX incidents_by_monitor ON incidents (namespace, monitor, id);
