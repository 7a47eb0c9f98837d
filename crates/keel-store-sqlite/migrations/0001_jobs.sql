-- Jobs live in one table for their whole life. `seq` (the rowid) is the enqueue
-- order and the cursor of listings; `id` is the public UUIDv7. Times are Unix ms.
CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY,
    id               BLOB    NOT NULL UNIQUE,
    namespace        TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    payload          TEXT    NOT NULL,
    priority         INTEGER NOT NULL,
    attempt          INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL,
    run_at           INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    lease_seq        INTEGER NOT NULL,
    lease_expires_at INTEGER,
    worker_id        TEXT,
    lease_ms         INTEGER NOT NULL,
    backoff          TEXT    NOT NULL,
    idempotency_key  TEXT,
    ordering_key     TEXT,
    tags             TEXT,
    result           TEXT
);
CREATE INDEX jobs_by_queue ON jobs (namespace, queue, seq);
-- No index on state for every job: each state change would rewrite an entry
-- (measured: -12 % drain throughput). Dead letters are what people list by
-- state, and they are few, so only they are indexed.
CREATE INDEX jobs_dead ON jobs (namespace, seq) WHERE state = 'dead';
-- Only finished rows enter this index, once: retention pruning walks it.
CREATE INDEX jobs_finished ON jobs (namespace, queue, finished_at) WHERE finished_at IS NOT NULL;

CREATE TABLE job_errors (
    job_seq INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    message TEXT    NOT NULL,
    at      INTEGER NOT NULL
);
CREATE INDEX job_errors_by_job ON job_errors (job_seq);

CREATE TABLE idempotency_keys (
    namespace  TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    job_id     BLOB    NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at);

CREATE TABLE queues (
    namespace  TEXT    NOT NULL,
    queue      TEXT    NOT NULL,
    policy     TEXT    NOT NULL,
    paused     INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, queue)
) WITHOUT ROWID;
