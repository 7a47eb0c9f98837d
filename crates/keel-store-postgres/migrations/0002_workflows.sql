-- Workflow definitions, one row per version; the definition is canonical JSON.
CREATE TABLE keel_workflows (
    namespace  text    NOT NULL,
    name       text    NOT NULL,
    version    integer NOT NULL,
    definition text    NOT NULL,
    created_at bigint  NOT NULL,
    PRIMARY KEY (namespace, name, version)
);

-- Runs: immutable facts in columns, the journal as JSON text in `state`.
-- `seq` is the listing order and cursor; `rev` guards updates from every node
-- (compare and set), so two nodes advancing one run cannot both win.
CREATE TABLE keel_runs (
    seq             bigint GENERATED ALWAYS AS IDENTITY,
    id              uuid    NOT NULL PRIMARY KEY,
    namespace       text    NOT NULL,
    workflow        text    NOT NULL,
    version         integer NOT NULL,
    status          text    NOT NULL,
    input           text    NOT NULL,
    state           text    NOT NULL,
    idempotency_key text,
    created_at      bigint  NOT NULL,
    updated_at      bigint  NOT NULL,
    rev             bigint  NOT NULL
);
CREATE UNIQUE INDEX keel_runs_seq ON keel_runs (seq);
CREATE INDEX keel_runs_by_namespace ON keel_runs (namespace, seq);
CREATE INDEX keel_runs_by_workflow ON keel_runs (namespace, workflow, seq);
CREATE INDEX keel_runs_running ON keel_runs (seq) WHERE status = 'running';
-- A second start with the same key waits for the first and then finds it.
CREATE UNIQUE INDEX keel_runs_idempotency ON keel_runs (namespace, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
