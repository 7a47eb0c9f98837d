-- Monitors with their counters, their results (kept a while) and hourly
-- uptime (kept a year), and incidents: at most one unresolved per dedup key
-- (a monitor's is `monitor/{name}`), whatever node writes them.
CREATE TABLE keel_monitors (
    namespace  text   NOT NULL,
    name       text   NOT NULL,
    spec       text   NOT NULL,
    token      text   NOT NULL UNIQUE,
    state      text   NOT NULL,
    incident   uuid,
    created_at bigint NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (namespace, name)
);

CREATE TABLE keel_monitor_results (
    seq       bigserial PRIMARY KEY,
    namespace text      NOT NULL,
    monitor   text      NOT NULL,
    at        bigint    NOT NULL,
    body      text      NOT NULL
);
CREATE INDEX keel_monitor_results_of ON keel_monitor_results (namespace, monitor, seq);
CREATE INDEX keel_monitor_results_at ON keel_monitor_results (at);

CREATE TABLE keel_monitor_hours (
    namespace text   NOT NULL,
    monitor   text   NOT NULL,
    hour      bigint NOT NULL,
    up        bigint NOT NULL,
    down      bigint NOT NULL,
    PRIMARY KEY (namespace, monitor, hour)
);
CREATE INDEX keel_monitor_hours_at ON keel_monitor_hours (hour);

CREATE TABLE keel_incidents (
    namespace  text   NOT NULL,
    id         uuid   NOT NULL,
    dedup_key  text   NOT NULL,
    monitor    text,
    status     text   NOT NULL,
    body       text   NOT NULL,
    updated_at bigint NOT NULL,
    PRIMARY KEY (namespace, id)
);
CREATE UNIQUE INDEX keel_incidents_unresolved ON keel_incidents (namespace, dedup_key)
    WHERE status <> 'resolved';
CREATE INDEX keel_incidents_by_status ON keel_incidents (namespace, status, id);
CREATE INDEX keel_incidents_by_monitor ON keel_incidents (namespace, monitor, id);
