-- Workflow definitions, one row per version; the definition is canonical JSON.
CREATE TABLE workflows (
    namespace  TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    definition TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, name, version)
) WITHOUT ROWID;

-- Runs: immutable facts in columns, the journal as JSON in `state`. `seq` is
-- the listing order and cursor; `rev` guards updates (compare and set).
CREATE TABLE runs (
    seq             INTEGER PRIMARY KEY,
    id              BLOB    NOT NULL UNIQUE,
    namespace       TEXT    NOT NULL,
    workflow        TEXT    NOT NULL,
    version         INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    input           TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    rev             INTEGER NOT NULL
);
CREATE INDEX runs_by_namespace ON runs (namespace, seq);
CREATE INDEX runs_by_workflow ON runs (namespace, workflow, seq);
CREATE INDEX runs_running ON runs (seq) WHERE status = 'running';
CREATE UNIQUE INDEX runs_idempotency ON runs (namespace, idempotency_key) WHERE idempotency_key IS NOT NULL;
