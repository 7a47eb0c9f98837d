-- SLO counts per queue or topic and minute (minutes since the epoch),
-- added up by every node (an upsert that adds); the wait histogram holds
-- bucket counts (keel_core::slo::WAIT_BOUNDS_MS). Pruned after the
-- budget's period. A topic's objectives live beside its policy.
CREATE TABLE keel_slo_minutes (
    namespace text     NOT NULL,
    kind      text     NOT NULL,
    name      text     NOT NULL,
    minute    bigint   NOT NULL,
    waits     bigint   NOT NULL,
    slow      bigint   NOT NULL,
    succeeded bigint   NOT NULL,
    failed    bigint   NOT NULL,
    histogram bigint[] NOT NULL,
    PRIMARY KEY (namespace, kind, name, minute)
);
CREATE INDEX keel_slo_minutes_by_minute ON keel_slo_minutes (minute);
ALTER TABLE keel_topics ADD COLUMN slo text;
