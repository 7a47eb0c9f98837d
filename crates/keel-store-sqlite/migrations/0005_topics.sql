-- Topics: policy and how far the log reaches. `head_seq` is the last seq
-- given out; `events` counts the rows kept (publish adds, retention removes).
CREATE TABLE topics (
    namespace       TEXT    NOT NULL,
    name            TEXT    NOT NULL,
    retention_ms    INTEGER NOT NULL,
    dedup_window_ms INTEGER NOT NULL,
    max_event_bytes INTEGER NOT NULL,
    head_seq        INTEGER NOT NULL,
    events          INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (namespace, name)
) WITHOUT ROWID;

-- Events, in seq order per topic. `headers` is a JSON object or NULL.
CREATE TABLE events (
    namespace    TEXT    NOT NULL,
    topic        TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    id           TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    source       TEXT    NOT NULL,
    key          TEXT,
    time         INTEGER NOT NULL,
    data         TEXT    NOT NULL,
    headers      TEXT,
    published_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, topic, seq)
) WITHOUT ROWID;
-- Dedup and lookup by id (the latest first).
CREATE INDEX events_by_id ON events (namespace, topic, id, seq);
