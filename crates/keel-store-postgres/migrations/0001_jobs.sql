-- Jobs for their whole life. `seq` is the enqueue order across all nodes and
-- the cursor of listings; `id` is the public UUIDv7. Times are Unix ms, as in
-- keel-core. Payloads and results are text: kept byte for byte.
CREATE TABLE keel_jobs (
    seq              bigint GENERATED ALWAYS AS IDENTITY,
    id               uuid     NOT NULL PRIMARY KEY,
    namespace        text     NOT NULL,
    queue            text     NOT NULL,
    state            text     NOT NULL,
    payload          text     NOT NULL,
    priority         smallint NOT NULL,
    attempt          integer  NOT NULL,
    max_attempts     integer  NOT NULL,
    run_at           bigint   NOT NULL,
    created_at       bigint   NOT NULL,
    updated_at       bigint   NOT NULL,
    finished_at      bigint,
    lease_seq        bigint   NOT NULL,
    lease_expires_at bigint,
    worker_id        text,
    lease_ms         bigint   NOT NULL,
    backoff          text     NOT NULL,
    idempotency_key  text,
    ordering_key     text,
    tags             jsonb,
    result           text
);
CREATE UNIQUE INDEX keel_jobs_seq ON keel_jobs (seq);
-- What leasing reads: the ready jobs of a queue in lease order.
CREATE INDEX keel_jobs_ready ON keel_jobs (namespace, queue, priority DESC, run_at, seq) WHERE state = 'ready';
CREATE INDEX keel_jobs_scheduled ON keel_jobs (run_at) WHERE state = 'scheduled';
CREATE INDEX keel_jobs_leased ON keel_jobs (lease_expires_at) WHERE state = 'leased';
CREATE INDEX keel_jobs_by_queue ON keel_jobs (namespace, queue, seq);
CREATE INDEX keel_jobs_dead ON keel_jobs (namespace, seq) WHERE state = 'dead';
CREATE INDEX keel_jobs_finished ON keel_jobs (finished_at) WHERE finished_at IS NOT NULL;
-- Per-key order: the oldest unfinished job of a key is found here...
CREATE INDEX keel_jobs_ordering ON keel_jobs (namespace, queue, ordering_key, seq)
    WHERE ordering_key IS NOT NULL AND finished_at IS NULL;
-- ...and the database refuses a second leased job of one key, whichever node asks.
CREATE UNIQUE INDEX keel_jobs_one_leased_per_key ON keel_jobs (namespace, queue, ordering_key)
    WHERE ordering_key IS NOT NULL AND state = 'leased';

CREATE TABLE keel_job_errors (
    job_id  uuid    NOT NULL REFERENCES keel_jobs (id) ON DELETE CASCADE,
    attempt integer NOT NULL,
    message text    NOT NULL,
    at      bigint  NOT NULL,
    n       bigint GENERATED ALWAYS AS IDENTITY
);
CREATE INDEX keel_job_errors_by_job ON keel_job_errors (job_id, n);

-- Idempotency keys: the primary key makes a second claim wait for the first.
CREATE TABLE keel_idempotency (
    namespace  text   NOT NULL,
    key        text   NOT NULL,
    job_id     uuid   NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX keel_idempotency_expiry ON keel_idempotency (expires_at);

CREATE TABLE keel_queues (
    namespace  text    NOT NULL,
    queue      text    NOT NULL,
    policy     jsonb   NOT NULL,
    paused     boolean NOT NULL,
    updated_at bigint  NOT NULL,
    PRIMARY KEY (namespace, queue)
);
