-- Topics: policy and how far the log reaches. `head_seq` is the last seq
-- given out: publishers take it under this row's lock and hold the lock to
-- their commit, so seqs become visible in order (see topics.rs).
CREATE TABLE keel_topics (
    namespace       text   NOT NULL,
    name            text   NOT NULL,
    retention_ms    bigint NOT NULL,
    dedup_window_ms bigint NOT NULL,
    max_event_bytes bigint NOT NULL,
    head_seq        bigint NOT NULL,
    events          bigint NOT NULL,
    created_at      bigint NOT NULL,
    PRIMARY KEY (namespace, name)
);

-- Events, in seq order per topic; `headers` is a JSON object or NULL.
CREATE TABLE keel_events (
    namespace    text   NOT NULL,
    topic        text   NOT NULL,
    seq          bigint NOT NULL,
    id           text   NOT NULL,
    type         text   NOT NULL,
    source       text   NOT NULL,
    key          text,
    time         bigint NOT NULL,
    data         text   NOT NULL,
    headers      text,
    published_at bigint NOT NULL,
    PRIMARY KEY (namespace, topic, seq)
);
-- Dedup and lookup by id (the latest first).
CREATE INDEX keel_events_by_id ON keel_events (namespace, topic, id, seq);
